"""Jobs, windows and freezes from schedules.yml."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.cli.common import Command, at_least
from runner.core.errors import BadOptions
from runner.scheduling.listing import describe, format_listing, to_json
from runner.scheduling.model import load
from runner.scheduling.units import render_units, scheduler_unit

COMMAND = Command("schedule", "scheduled jobs: list, validate, install timers")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "validate", "install"])
    parser.add_argument("--file", help="schedules file (default: schedules.yml)")
    parser.add_argument(
        "--count", type=int, default=3, help="list: next N runs per job (at least 1)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--systemd", action="store_true", help="install: render systemd timer and service units"
    )
    parser.add_argument(
        "--output", default="/etc/systemd/system", help="install: where to write the units"
    )


def handle(args: argparse.Namespace) -> int:
    at_least(args.count, 1, "--count")
    schedules = load(Path(args.file) if args.file else None)
    if args.action == "validate":
        print(
            f"{schedules.path}: {len(schedules.jobs)} job(s), {len(schedules.windows)} "
            f"window(s), {len(schedules.freezes)} freeze(s): valid"
        )
        return 0
    if args.action == "list":
        rows = describe(schedules, count=args.count)
        print(to_json(rows) if args.json else format_listing(rows, schedules))
        return 0
    if not args.systemd:
        raise BadOptions("install needs --systemd (the only installer so far)")
    techops_bin = str(Path(sys.executable).parent / "techops")
    units = render_units(schedules, techops_bin)
    units["techops-scheduler.service"] = scheduler_unit(techops_bin, schedules)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(units.items()):
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    print(
        "enable the timers with: systemctl daemon-reload && systemctl enable --now "
        + " ".join(n for n in sorted(units) if n.endswith(".timer"))
        + "\n(or run the scheduler service instead of the timers: never both)"
    )
    return 0
