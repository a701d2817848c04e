"""`techops scheduler`: the scheduler service in the foreground."""

from __future__ import annotations

import argparse

from runner.cli.common import ledger_option
from runner.scheduling.service import serve


def add_parser(sub: argparse._SubParsersAction) -> None:
    scheduler = sub.add_parser(
        "scheduler",
        help="run the scheduler in the foreground",
        description="Fire the jobs of schedules.yml when due (one "
        "instance at a time). Stop with SIGTERM or Ctrl-C.",
    )
    scheduler.add_argument(
        "--once", action="store_true", help="fire the jobs due now (catch-up), then exit"
    )
    ledger_option(scheduler)
    scheduler.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    return serve(ledger=args.ledger, once=args.once)
