"""What every command shares: the parser class, the ledger option, argument checks, and
writing a report where the user asked."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from runner.core.errors import BadOptions
from runner.ledger.store import Ledger, ledger_url


class Parser(argparse.ArgumentParser):
    """argparse, but bad options exit 5 as ansible-playbook does."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(BadOptions.EXIT_CODE, f"{self.prog}: error: {message}\n")


Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """What a command module says of itself; its docstring is the head of its --help."""

    name: str
    summary: str  # its line in `techops --help`
    ledger: bool = False  # it takes --ledger


def command(
    sub: argparse._SubParsersAction, spec: Command, handler: Handler, description: str | None
) -> argparse.ArgumentParser:
    """A command's parser, before the command module adds its own arguments."""
    parser: argparse.ArgumentParser = sub.add_parser(
        spec.name, help=spec.summary, description=description
    )
    parser.set_defaults(handler=handler)
    if spec.ledger:
        ledger_option(parser)
    return parser


def ledger_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger",
        help="ledger URL (default: TECHOPS_LEDGER, else sqlite in .techops/ledger.sqlite3)",
    )


def open_ledger(args: argparse.Namespace, *, create: bool = False) -> Ledger:
    return Ledger.open(ledger_url(getattr(args, "ledger", None)), create=create)


def at_least(value: int | None, minimum: int, option: str) -> None:
    """A count given on the command line must be meaningful: refuse it in one line
    instead of silently using another value."""
    if value is not None and value < minimum:
        raise BadOptions(f"{option} must be at least {minimum} (got {value})")


def output_path(output: str | None) -> Path | None:
    """Where -o asks a report to go, checked before any work is done."""
    if not output:
        return None
    path = Path(output)
    if path.is_dir():
        raise BadOptions(f"-o {output} is a directory: give a file name")
    if not path.parent.is_dir():
        raise BadOptions(f"-o {output}: directory {path.parent} does not exist (create it first)")
    return path


def write(text: str, output: Path | None) -> None:
    if output is not None:
        output.write_text(text)
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
