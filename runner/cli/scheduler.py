"""Fire the jobs of schedules.yml when due (one instance at a time). Stop with SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse

from runner.cli.common import Command
from runner.scheduling.service import serve

COMMAND = Command("scheduler", "run the scheduler in the foreground", ledger=True)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once", action="store_true", help="fire the jobs due now (catch-up), then exit"
    )


def handle(args: argparse.Namespace) -> int:
    return serve(ledger=args.ledger, once=args.once)
