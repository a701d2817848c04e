"""`techops report capacity`: its options and how they are checked.

The other reports read the ledger; this one asks Prometheus, and takes options no other
report has (where Prometheus is, what to leave out, the thresholds). They live here, as a
group of their own in `techops report --help`, so that report.py only hands over to it.
"""

from __future__ import annotations

import argparse
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from runner.cli.common import at_least, write
from runner.core.errors import BadOptions, UserError
from runner.monitoring import capacity
from runner.monitoring.prometheus import URL_ENV, Prometheus, base_url, read_credentials

# Options of this report alone: given with another report, they are refused.
_OWN = (
    "prometheus",
    "prometheus_token_file",
    "prometheus_basic_auth_file",
    "prometheus_timeout",
    "step",
    "fs_exclude_types",
    "fs_exclude_mounts",
    "net_exclude_devices",
    "min_points",
    "min_r2",
    "fill_within",
    "disk_high",
    "cpu_high",
    "memory_high",
    "cpu_low",
    "memory_low",
)
DEFAULT_TIMEOUT = 30.0
_T = capacity.Thresholds()


def arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "capacity report",
        "techops report capacity [--since 7d|DATE] [--until DATE] [--step 5m]: from Prometheus",
    )
    group.add_argument(
        "--prometheus", metavar="URL", help=f"Prometheus's base URL (default: ${URL_ENV})"
    )
    group.add_argument(
        "--prometheus-token-file", metavar="FILE", help="a bearer token for Prometheus, in a file"
    )
    group.add_argument(
        "--prometheus-basic-auth-file",
        metavar="FILE",
        help="user:password for Prometheus, on the first line of a file",
    )
    group.add_argument(
        "--prometheus-timeout",
        type=float,
        metavar="SECONDS",
        help=f"for each request (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument("--step", help=f"a point every STEP (default {capacity.DEFAULT_STEP})")
    group.add_argument(
        "--fs-exclude-types",
        metavar="REGEX",
        help="filesystem types left out, matched whole (default: pseudo filesystems, overlay, "
        "squashfs; tmpfs is kept)",
    )
    group.add_argument(
        "--fs-exclude-mounts",
        metavar="REGEX",
        help="mount points left out, matched whole (default: /dev, /proc, /sys, /run and "
        "under, container storage); '' keeps every one",
    )
    group.add_argument(
        "--net-exclude-devices",
        metavar="REGEX",
        help="network devices left out, matched whole "
        f"(default {capacity.DEFAULT_NET_EXCLUDE_DEVICES})",
    )
    group.add_argument(
        "--min-points",
        type=int,
        help=f"samples a trend needs (default {capacity.DEFAULT_MIN_POINTS})",
    )
    group.add_argument(
        "--min-r2",
        type=float,
        help=f"R² a forecast needs, 0 to 1 (default {capacity.DEFAULT_MIN_R2})",
    )
    group.add_argument(
        "--fill-within",
        type=float,
        metavar="DAYS",
        help=f"rank what is full within DAYS (default {_T.fill_within_days:g})",
    )
    for name, default, what in (
        ("disk-high", _T.disk_high_percent, "a filesystem used above this"),
        ("cpu-high", _T.cpu_high_percent, "CPU p95 above this"),
        ("memory-high", _T.memory_high_percent, "memory p95 above this"),
        ("cpu-low", _T.cpu_low_percent, "spare: CPU p95 under this"),
        ("memory-low", _T.memory_low_percent, "spare: memory p95 under this"),
    ):
        group.add_argument(
            f"--{name}", type=float, metavar="PERCENT", help=f"{what} (default {default:g})"
        )


def refuse_elsewhere(args: argparse.Namespace) -> None:
    """An option of this report given with another is a mistake: say so rather than
    ignore it."""
    if args.what == "capacity":
        return
    for dest in _OWN:
        if getattr(args, dest, None) is not None:
            option = "--" + dest.replace("_", "-")
            raise BadOptions(f"{option} applies to the capacity report only")


def handle(args: argparse.Namespace, output: Path | None) -> int:
    if args.format == "md":
        raise UserError("the capacity report comes as html, json or csv")
    at_least(args.min_points, 3, "--min-points")
    if args.min_r2 is not None and not 0 <= args.min_r2 <= 1:
        raise BadOptions(f"--min-r2 must be between 0 and 1 (got {args.min_r2:g})")
    if args.prometheus_timeout is not None and args.prometheus_timeout <= 0:
        raise BadOptions("--prometheus-timeout must be more than 0 seconds")
    if args.fill_within is not None and args.fill_within <= 0:
        raise BadOptions("--fill-within must be more than 0 days")
    limits = {}
    for dest in ("disk_high", "cpu_high", "memory_high", "cpu_low", "memory_low"):
        value = getattr(args, dest)
        if value is not None and not 0 < value <= 100:
            option = "--" + dest.replace("_", "-")
            raise BadOptions(f"{option} must be a percentage, over 0 and at most 100")
        if value is not None:
            limits[f"{dest}_percent"] = value
    if args.fill_within is not None:
        limits["fill_within_days"] = args.fill_within
    now = datetime.now(UTC)
    start, end, step = capacity.period(args.since, args.until, args.step, now)

    def regex(given: str | None, default: str, option: str) -> re.Pattern[str]:
        return capacity.pattern(default if given is None else given, option)

    settings = capacity.Settings(
        start,
        end,
        step,
        fs_exclude_types=regex(
            args.fs_exclude_types, capacity.DEFAULT_FS_EXCLUDE_TYPES, "--fs-exclude-types"
        ),
        fs_exclude_mounts=regex(
            args.fs_exclude_mounts, capacity.DEFAULT_FS_EXCLUDE_MOUNTS, "--fs-exclude-mounts"
        ),
        net_exclude_devices=regex(
            args.net_exclude_devices,
            capacity.DEFAULT_NET_EXCLUDE_DEVICES,
            "--net-exclude-devices",
        ),
        min_points=args.min_points or capacity.DEFAULT_MIN_POINTS,
        min_r2=capacity.DEFAULT_MIN_R2 if args.min_r2 is None else args.min_r2,
        thresholds=capacity.Thresholds(**limits),
    )
    prometheus = Prometheus(
        base_url(args.prometheus, os.environ.get(URL_ENV)),
        timeout=args.prometheus_timeout or DEFAULT_TIMEOUT,
        credentials=read_credentials(args.prometheus_token_file, args.prometheus_basic_auth_file),
    )
    write(capacity.capacity_report(prometheus, settings, args.format, now=now), output)
    return 0
