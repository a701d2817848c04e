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
    from runner.launch import ledger_url

    return ledger_url(getattr(args, "ledger", None))


def _cmd_run(args: argparse.Namespace) -> int:
    from runner.launch import parse_when, run_job, run_recorded
    from runner.ledger import Ledger
    from runner.run import (
        RunRequest,
        parse_extravars,
        resolve_inventory,
        resolve_playbook,
        to_json,
    )

    if args.schedule:
        if args.playbook:
            raise UserError(
                "give either a playbook or --schedule NAME (the job names its "
                "playbook in schedules.yml)",
                exit_code=5,
            )
        return run_job(
            args.schedule,
            ledger=Ledger.open(_ledger_url(args)),
            scheduled_for=parse_when(args.scheduled_for),
            override_reason=args.override_reason,
        )
    if not args.playbook:
        raise UserError("which playbook? e.g. techops run site (or --schedule NAME)", exit_code=5)
    if args.override_reason or args.scheduled_for:
        raise UserError("--override-reason and --scheduled-for go with --schedule", exit_code=5)
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
        fast=args.fast or os.environ.get("TECHOPS_FAST") == "1",
    )
    if args.node:
        from runner.remote import load_nodes

        nodes = load_nodes()
        if args.node not in nodes:
            raise UserError(
                f"no execution node {args.node!r} in nodes.yml "
                f"(nodes: {', '.join(sorted(nodes)) or 'none'})"
            )
        request.node = nodes[args.node]
    # The ledger must be usable before anything runs: a run that cannot be recorded
    # does not start.
    ledger = Ledger.open(_ledger_url(args))
    result = run_recorded(request, ledger, reason=args.reason, ticket=args.ticket)
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


def _open_ledger(args: argparse.Namespace, *, create: bool = False):
    from runner.ledger import Ledger

    return Ledger.open(_ledger_url(args), create=create)


def _cmd_runs(args: argparse.Namespace) -> int:
    from runner.recorder import reap_interrupted
    from runner.reports import filter_runs, load_runs, parse_date, runs_table

    ledger = _open_ledger(args, create=True)
    reap_interrupted(ledger)
    runs = filter_runs(
        load_runs(ledger),
        playbook=args.playbook,
        status=args.status,
        host=args.host,
        since=parse_date(args.since) if args.since else None,
        until=parse_date(args.until, end_of_day=True) if args.until else None,
    )
    if args.json:
        import json

        print(json.dumps([r.as_dict() for r in runs], indent=2, sort_keys=True))
    else:
        print(runs_table(runs[-args.last :] if args.last else runs))
    return 0


def _write(text: str, output: str | None) -> None:
    if output:
        from pathlib import Path

        Path(output).write_text(text)
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _cmd_report(args: argparse.Namespace) -> int:
    from runner.reports import compliance_report, parse_date, run_report

    if args.what == "drill" and not args.run_id:
        raise UserError(
            "which drill? techops report drill RUN_ID "
            "(list them: techops runs --playbook dr_drill)",
            exit_code=5,
        )
    if args.what != "drill" and args.run_id:
        raise UserError(
            f"unexpected {args.run_id!r}: only 'drill' takes a run id after it", exit_code=5
        )
    ledger = _open_ledger(args)
    if args.what == "drill":
        from runner.reports import drill_report

        if args.format == "csv":
            raise UserError("a drill report comes as html, json or md")
        _write(drill_report(ledger, args.run_id, args.format), args.output)
        return 0
    if args.what == "access":
        from runner.reports import access_report

        if args.format == "md":
            raise UserError("the access review comes as html, json or csv")
        _write(access_report(ledger, args.format), args.output)
        return 0
    if args.what == "compliance":
        if args.format == "md":
            raise UserError("the compliance report comes as html, json or csv")
        since = parse_date(args.since) if args.since else "0000"
        _write(compliance_report(ledger, since, args.format), args.output)
    else:
        if args.format == "csv":
            raise UserError("a run report comes as html, json or md")
        _write(run_report(ledger, args.what, args.format), args.output)
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from runner import ledger as ledger_mod

    if args.action == "keygen":
        private, public = ledger_mod.generate_keypair()
        key = Path(args.key)
        if key.exists():
            raise UserError(f"{key} exists: refusing to overwrite a signing key")
        key.parent.mkdir(parents=True, exist_ok=True)
        key.touch(mode=0o600)
        key.write_bytes(private)
        key.with_suffix(".pub").write_bytes(public)
        print(f"wrote {key} (keep it private) and {key.with_suffix('.pub')} (give it to auditors)")
        return 0
    ledger = _open_ledger(args)
    if args.action == "checkpoint":
        key = Path(args.key)
        if not key.is_file():
            raise UserError(f"signing key {key} not found: create one with techops audit keygen")
        cp = ledger.checkpoint(key.read_bytes())
        if args.checkpoints:
            with open(args.checkpoints, "a") as out:
                out.write(json.dumps(cp, sort_keys=True) + "\n")
        print(f"checkpoint: entry {cp['seq']} {cp['hash']} signed by key {cp['key_id']}")
        return 0
    if args.action == "prune":
        from runner.reports import parse_date
        from runner.retention import prune_detail

        if not args.before:
            raise UserError("prune needs --before DATE: detail of runs ended before it is removed")
        body = prune_detail(ledger, parse_date(args.before))
        if body is None:
            print("nothing to prune")
        else:
            print(
                f"pruned the event detail of {len(body['runs'])} run(s) "
                f"({body['rows_deleted']} rows); tombstone appended to the ledger"
            )
        return 0
    trusted = []
    if args.checkpoints:
        path = Path(args.checkpoints)
        if not path.is_file():
            raise UserError(f"checkpoints file {path} not found")
        trusted = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                trusted.append(json.loads(line))
            except ValueError:
                raise UserError(
                    f"{path}:{number}: not a checkpoint (one JSON object a line)"
                ) from None
            if not isinstance(trusted[-1], dict) or not {"seq", "hash"} <= trusted[-1].keys():
                raise UserError(f"{path}:{number}: a checkpoint needs seq, hash and a signature")
    public = None
    if args.public_key:
        if not Path(args.public_key).is_file():
            raise UserError(f"public key {args.public_key} not found")
        public = Path(args.public_key).read_bytes()
    result = ledger.verify(trusted, public)
    if result.ok:
        print(
            f"ledger {ledger.where}: {result.entries} entries verify; head entry "
            f"{result.head_seq} {result.head_hash}; {result.checkpoints_checked} "
            "checkpoint(s) match"
        )
        return 0
    print(f"ledger {ledger.where}: DOES NOT VERIFY: {result.problem.reason}", file=sys.stderr)
    return 3


def _cmd_schedule(args: argparse.Namespace) -> int:
    from pathlib import Path

    from runner.schedule import load
    from runner.scheduler import (
        describe,
        format_listing,
        render_units,
        scheduler_unit,
        to_json,
    )

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
        raise UserError("install needs --systemd (the only installer so far)", exit_code=5)
    techops_bin = str(Path(sys.executable).parent / "techops")
    units = render_units(schedules, techops_bin)
    units["techops-scheduler.service"] = scheduler_unit(techops_bin)
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


def _cmd_scheduler(args: argparse.Namespace) -> int:
    from runner.scheduler import serve

    return serve(ledger=args.ledger, once=args.once)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="techops", description=__doc__)
    parser.add_argument("--version", action="version", version=f"techops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def ledger_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--ledger",
            help="ledger URL (default: TECHOPS_LEDGER, else sqlite in .techops/ledger.sqlite3)",
        )

    run = sub.add_parser(
        "run",
        help="run a playbook through ansible-runner",
        description="Run a playbook with live progress and ansible-playbook's exit codes.",
    )
    run.add_argument("playbook", nargs="?", help="path, or a name under playbooks/ (e.g. site)")
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
    run.add_argument(
        "--fast",
        action="store_true",
        help="use mitogen's strategy (several times faster over SSH); also TECHOPS_FAST=1",
    )
    run.add_argument("--json", action="store_true", help="print the outcome as JSON at the end")
    run.add_argument(
        "--node",
        help="run on this execution node of nodes.yml (ansible-runner "
        "streaming over SSH or Receptor)",
    )
    run.add_argument("--reason", help="why this run happens (recorded in the ledger)")
    run.add_argument("--ticket", help="change or incident ticket (recorded in the ledger)")
    run.add_argument(
        "--schedule",
        metavar="JOB",
        help="run a job of schedules.yml through the "
        "gate (window, freeze, overlap), as the scheduler and timers do",
    )
    run.add_argument(
        "--override-reason",
        help="with --schedule: emergency override of a "
        "closed window or a freeze; recorded in the ledger",
    )
    run.add_argument(
        "--scheduled-for",
        help="with --schedule: the time the job was due "
        "(ISO 8601), for the misfire policy; default: its last due time",
    )
    ledger_option(run)
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

    runs = sub.add_parser(
        "runs", help="list recorded runs", description="List runs from the ledger, oldest first."
    )
    runs.add_argument("--playbook", help="only runs of playbooks whose path contains this")
    runs.add_argument(
        "--status",
        choices=["successful", "failed", "canceled", "timeout", "interrupted", "error", "running"],
    )
    runs.add_argument("--host", help="only runs that touched this host")
    runs.add_argument("--since", help="YYYY-MM-DD or ISO date-time (UTC if no zone)")
    runs.add_argument("--until", help="YYYY-MM-DD or ISO date-time (UTC if no zone)")
    runs.add_argument("--last", type=int, help="only the newest N")
    runs.add_argument("--json", action="store_true")
    ledger_option(runs)
    runs.set_defaults(handler=_cmd_runs)

    report = sub.add_parser(
        "report",
        help="write a run, drill, compliance or access report",
        description="Reports read the ledger only.",
    )
    report.add_argument(
        "what", help="a run id (or a unique prefix), 'drill' RUN_ID, 'compliance' or 'access'"
    )
    report.add_argument(
        "run_id",
        nargs="?",
        metavar="RUN_ID",
        help="drill: the drill's run id (or a unique prefix); the report adds the trend",
    )
    report.add_argument("--format", choices=["html", "json", "md", "csv"], default="html")
    report.add_argument("--since", help="compliance: failed runs since this date")
    report.add_argument("-o", "--output", help="write to this file instead of stdout")
    ledger_option(report)
    report.set_defaults(handler=_cmd_report)

    audit = sub.add_parser(
        "audit",
        help="verify the ledger, sign checkpoints",
        description="Tamper evidence of the ledger.",
    )
    audit.add_argument("action", choices=["verify", "checkpoint", "keygen", "prune"])
    audit.add_argument(
        "--before",
        help="prune: remove stored event detail of runs ended before this date (run records stay)",
    )
    audit.add_argument(
        "--key",
        default=".techops/audit/checkpoint.key",
        help="checkpoint/keygen: the ed25519 signing key (PEM)",
    )
    audit.add_argument("--public-key", help="verify: check checkpoint signatures with this key")
    audit.add_argument(
        "--checkpoints",
        help="checkpoint: also append to this file; verify: "
        "checkpoints kept elsewhere (JSON lines) to check against",
    )
    ledger_option(audit)
    audit.set_defaults(handler=_cmd_audit)

    schedule = sub.add_parser(
        "schedule",
        help="scheduled jobs: list, validate, install timers",
        description="Jobs, windows and freezes from schedules.yml.",
    )
    schedule.add_argument("action", choices=["list", "validate", "install"])
    schedule.add_argument("--file", help="schedules file (default: schedules.yml)")
    schedule.add_argument("--count", type=int, default=3, help="list: next N runs per job")
    schedule.add_argument("--json", action="store_true")
    schedule.add_argument(
        "--systemd", action="store_true", help="install: render systemd timer and service units"
    )
    schedule.add_argument(
        "--output", default="/etc/systemd/system", help="install: where to write the units"
    )
    schedule.set_defaults(handler=_cmd_schedule)

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
    scheduler.set_defaults(handler=_cmd_scheduler)
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
