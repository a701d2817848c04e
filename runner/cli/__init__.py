"""techops: run, schedule and record the TechOps Ansible content."""

from __future__ import annotations

import os
import sys

from runner import __version__
from runner.cli import (
    alerts,
    audit,
    change,
    incident,
    lab,
    report,
    run,
    runs,
    schedule,
    scheduler,
)
from runner.cli.common import Parser, command
from runner.core.errors import UserError

# One module per command, in the order `techops --help` lists them. Each says what it is
# (COMMAND, and its docstring for its --help), adds its own arguments (arguments), and
# checks and runs them (handle).
COMMANDS = (run, change, lab, runs, report, audit, schedule, scheduler, alerts, incident)


def build_parser() -> Parser:
    parser = Parser(prog="techops", description=__doc__)
    parser.add_argument("--version", action="version", version=f"techops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        module.arguments(command(sub, module.COMMAND, module.handle, module.__doc__))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"techops: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("techops: interrupted", file=sys.stderr)
        return 99
    except Exception as exc:
        if os.environ.get("TECHOPS_DEBUG"):
            raise
        print(
            f"techops: unexpected error: {type(exc).__name__}: {exc} "
            "(set TECHOPS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 250
