"""techops: run, schedule and record the TechOps Ansible content."""

from __future__ import annotations

import argparse
import os
import sys

from runner import __version__
from runner.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but bad options exit 5 as ansible-playbook does (2 means host failures)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(5, f"{self.prog}: error: {message}\n")


def _ledger_url(args: argparse.Namespace) -> str:
    from runner.ledger import default_url
    from runner.paths import state_dir

    return args.ledger or os.environ.get("TECHOPS_LEDGER") or default_url(state_dir())


def _cmd_run(args: argparse.Namespace) -> int:
    from runner.ledger import Ledger
    from runner.locks import RunLock, resolve_hosts
    from runner.paths import state_dir
    from runner.progress import Progress
    from runner.recorder import Recorder, reap_interrupted
    from runner.redact import Redactor, inventory_secret_values, secret_values
    from runner.run import (
        RunRequest,
        execute,
        parse_extravars,
        resolve_inventory,
        resolve_playbook,
        to_json,
    )

    request = RunRequest(
        playbook=resolve_playbook(args.playbook),
        inventory=resolve_inventory(args.inventory),
        limit=args.limit,
        tags=args.tags,
        skip_tags=args.skip_tags,
        check=args.check,
        diff=args.diff,
        extravars=parse_extravars(args.extra_vars or []),
        forks=args.forks,
        verbosity=args.verbose,
    )
    # The ledger must be usable before anything runs: a run that cannot be recorded
    # does not start.
    ledger = Ledger.open(_ledger_url(args))
    reap_interrupted(ledger)
    hosts = resolve_hosts(request.inventory, request.limit)
    redactor = Redactor(
        secret_values(request.extravars) | inventory_secret_values(request.inventory)
    )
    recorder = Recorder(
        ledger,
        redactor=redactor,
        reason=args.reason,
        ticket=args.ticket,
        schedule=args.schedule,
        hosts=hosts,
    )
    holder = {"run_id": request.run_id, "who": os.environ.get("USER", ""), "pid": os.getpid()}
    with RunLock(state_dir() / "locks", str(request.playbook), hosts, holder):
        try:
            result = execute(request, [Progress(redactor=redactor), recorder])
        except BaseException:
            recorder.finish("error", 250)
            raise
    if args.json:
        print(to_json(result))
    return result.rc


def _cmd_lab(args: argparse.Namespace) -> int:
    from runner import lab as labmod

    lab = labmod.Lab(name=args.name, release=args.debian)
    if args.action == "up":
        labmod.up(lab)
    elif args.action == "down":
        labmod.down(lab, images=args.images)
    elif args.action == "status":
        rows = labmod.status(lab)
        print(labmod.format_rows(rows))
        return 0 if all(r["ssh"] == "ok" for r in rows) else 3
    elif args.action == "build":
        for release in args.release or [args.debian]:
            labmod.build_image(release, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="techops", description=__doc__)
    parser.add_argument("--version", action="version", version=f"techops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run a playbook through ansible-runner",
        description="Run a playbook with live progress and ansible-playbook's exit codes.",
    )
    run.add_argument("playbook", help="path, or a name under playbooks/ (e.g. site)")
    run.add_argument("-i", "--inventory", help="inventory (default: ansible.cfg's, the lab)")
    run.add_argument("-l", "--limit", help="limit to hosts or groups (Ansible pattern)")
    run.add_argument("-t", "--tags")
    run.add_argument("--skip-tags")
    run.add_argument("-C", "--check", action="store_true", help="check mode: change nothing")
    run.add_argument("-D", "--diff", action="store_true")
    run.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        metavar="VARS",
        help="key=value, YAML/JSON mapping, or @file (repeatable)",
    )
    run.add_argument("-f", "--forks", type=int)
    run.add_argument("-v", "--verbose", action="count", default=0)
    run.add_argument("--json", action="store_true", help="print the outcome as JSON at the end")
    run.add_argument("--reason", help="why this run happens (recorded in the ledger)")
    run.add_argument("--ticket", help="change or incident ticket (recorded in the ledger)")
    run.add_argument("--schedule", help=argparse.SUPPRESS)
    run.add_argument(
        "--ledger",
        help="ledger URL (default: TECHOPS_LEDGER, else sqlite in .techops/ledger.sqlite3)",
    )
    run.set_defaults(handler=_cmd_run)

    lab = sub.add_parser(
        "lab",
        help="the local lab of podman systemd hosts",
        description="Create, inspect and remove the local lab.",
    )
    lab.add_argument("action", choices=["up", "down", "status", "build"])
    lab.add_argument("--name", default="techops", help="lab name (default: techops)")
    lab.add_argument("--debian", default="12", help="Debian release for the hosts: 12 or 13")
    lab.add_argument("--release", action="append", help="build: image(s) to build (repeatable)")
    lab.add_argument("--force", action="store_true", help="build: rebuild even if current")
    lab.add_argument("--images", action="store_true", help="down: also remove the base images")
    lab.set_defaults(handler=_cmd_lab)
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


if __name__ == "__main__":
    sys.exit(main())
