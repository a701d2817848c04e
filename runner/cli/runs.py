"""List runs from the ledger, oldest first."""

from __future__ import annotations

import argparse
import json

from runner.cli.common import Command, at_least, open_ledger
from runner.core.dates import parse_date
from runner.core.errors import BadOptions
from runner.ledger.recorder import reap_interrupted
from runner.reports.model import filter_runs, load_runs
from runner.reports.runs import runs_table

STATUSES = ["successful", "failed", "canceled", "timeout", "interrupted", "error", "running"]


COMMAND = Command("runs", "list recorded runs", ledger=True)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--playbook", help="only runs of playbooks whose path contains this")
    parser.add_argument("--status", choices=STATUSES)
    parser.add_argument("--host", help="only runs that touched this host")
    parser.add_argument("--since", help="YYYY-MM-DD or ISO date-time (UTC if no zone)")
    parser.add_argument("--until", help="YYYY-MM-DD or ISO date-time (UTC if no zone)")
    parser.add_argument("--last", type=int, help="only the newest N (at least 1)")
    parser.add_argument("--json", action="store_true")


def handle(args: argparse.Namespace) -> int:
    at_least(args.last, 1, "--last")
    since = parse_date(args.since) if args.since else None
    until = parse_date(args.until, end_of_day=True) if args.until else None
    if since and until and until < since:
        raise BadOptions(f"--until {args.until} is before --since {args.since}")
    ledger = open_ledger(args, create=True)
    reap_interrupted(ledger)
    runs = filter_runs(
        load_runs(ledger),
        playbook=args.playbook,
        status=args.status,
        host=args.host,
        since=since,
        until=until,
    )
    if args.last:
        runs = runs[-args.last :]
    if args.json:
        print(json.dumps([r.as_dict() for r in runs], indent=2, sort_keys=True))
    else:
        print(runs_table(runs))
    return 0
