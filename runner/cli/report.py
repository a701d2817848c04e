"""Reports read the ledger only; the capacity report alone asks Prometheus."""

from __future__ import annotations

import argparse
from pathlib import Path

from runner.cli import report_capacity
from runner.cli.common import Command, open_ledger, output_path, write
from runner.core.dates import parse_date
from runner.core.errors import BadOptions, UserError
from runner.core.inventory import inventory_hosts, resolve_inventory
from runner.core.paths import repo_root
from runner.monitoring.incident_report import incident_report
from runner.reports.access import access_report
from runner.reports.compliance import Inventory, compliance_report, load_thresholds
from runner.reports.drill import drill_report
from runner.reports.run import run_report
from runner.scheduling.model import default_path as schedules_path

COMMAND = Command(
    "report", "write a run, drill, compliance, access, incidents or capacity report", ledger=True
)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what",
        help="a run id (or unique prefix), 'drill' RUN_ID, 'compliance', 'access', 'incidents' "
        "or 'capacity'",
    )
    parser.add_argument(
        "run_id",
        nargs="?",
        metavar="RUN_ID",
        help="drill: the drill's run id (or a unique prefix); the report adds the trend",
    )
    parser.add_argument("--format", choices=["html", "json", "md", "csv"], default="html")
    parser.add_argument(
        "--since",
        help="compliance: failed runs since this date; incidents: started since; "
        "capacity: the period's start, a date or a duration before --until (default 7d)",
    )
    parser.add_argument(
        "--until",
        help="incidents: started until this date (a date: its end); "
        "capacity: the period's end (default now)",
    )
    parser.add_argument(
        "-i",
        "--inventory",
        help="compliance: every host of this inventory is listed (default: ansible.cfg's, the lab)",
    )
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    report_capacity.arguments(parser)


def handle(args: argparse.Namespace) -> int:
    if args.what == "drill" and not args.run_id:
        raise BadOptions(
            "which drill? techops report drill RUN_ID (list them: techops runs --playbook dr_drill)"
        )
    if args.what != "drill" and args.run_id:
        raise BadOptions(f"unexpected {args.run_id!r}: only 'drill' takes a run id after it")
    if args.inventory and args.what != "compliance":
        raise BadOptions("-i/--inventory applies to the compliance report only")
    if args.until and args.what not in ("incidents", "capacity"):
        raise BadOptions("--until applies to the incidents and capacity reports only")
    report_capacity.refuse_elsewhere(args)
    output = output_path(args.output)
    if args.what == "capacity":
        return report_capacity.handle(args, output)
    inventory = _inventory(args.inventory) if args.what == "compliance" else None
    ledger = open_ledger(args)
    if args.what == "drill":
        if args.format == "csv":
            raise UserError("a drill report comes as html, json or md")
        write(drill_report(ledger, args.run_id, args.format), output)
    elif args.what == "access":
        if args.format == "md":
            raise UserError("the access review comes as html, json or csv")
        write(access_report(ledger, args.format), output)
    elif args.what == "compliance":
        since = parse_date(args.since) if args.since else None
        thresholds = load_thresholds(schedules_path())
        report = compliance_report(
            ledger, since, args.format, inventory=inventory, thresholds=thresholds
        )
        write(report, output)
    elif args.what == "incidents":
        if args.format == "md":
            raise UserError("the incidents report comes as html, json or csv")
        since = parse_date(args.since) if args.since else None
        until = parse_date(args.until, end_of_day=True) if args.until else None
        write(incident_report(ledger, since, until, args.format), output)
    else:
        if args.format == "csv":
            raise UserError("a run report comes as html, json or md")
        write(run_report(ledger, args.what, args.format), output)
    return 0


def _inventory(given: str | None) -> Inventory:
    """The inventory the compliance report covers, as other commands choose it: -i, else
    ansible.cfg's. Every host of it is listed, whether a run touched it or not."""
    try:
        path = resolve_inventory(given)
    except UserError as exc:
        raise UserError(f"{exc} (name the inventory to report on with -i)") from None
    try:
        shown = str(Path(path).relative_to(repo_root()))
    except ValueError:
        shown = path
    return Inventory(shown, inventory_hosts(path))
