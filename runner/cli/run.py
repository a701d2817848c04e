"""Run a playbook with live progress and ansible-playbook's exit codes."""

from __future__ import annotations

import argparse
import os

from runner.cli.common import Command, at_least, open_ledger
from runner.core.dates import parse_when
from runner.core.errors import BadOptions, UserError
from runner.execution.launch import Why, run_recorded
from runner.execution.remote import load_nodes
from runner.execution.request import RunRequest, parse_extravars, to_json
from runner.execution.vault import Vault
from runner.scheduling import environments
from runner.scheduling.environments import environment_of
from runner.scheduling.jobs import run_job
from runner.scheduling.protect import RC_REFUSED, run_protected

COMMAND = Command("run", "run a playbook through ansible-runner", ledger=True)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("playbook", nargs="?", help="path, or a name under playbooks/ (e.g. site)")
    parser.add_argument("-i", "--inventory", help="inventory (default: ansible.cfg's, the lab)")
    parser.add_argument("-l", "--limit", help="limit to hosts or groups (Ansible pattern)")
    parser.add_argument("-t", "--tags")
    parser.add_argument("--skip-tags")
    parser.add_argument("-C", "--check", action="store_true", help="check mode: change nothing")
    parser.add_argument("-D", "--diff", action="store_true")
    parser.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        metavar="VARS",
        help="key=value, YAML/JSON mapping, or @file (repeatable)",
    )
    parser.add_argument(
        "--vault-password-file",
        "--vault-pass-file",
        action="append",
        default=[],
        metavar="FILE",
        help="vault password file or script (repeatable)",
    )
    parser.add_argument(
        "--vault-id",
        action="append",
        default=[],
        metavar="[LABEL@]SOURCE",
        help="vault identity: LABEL@FILE, LABEL@SCRIPT or LABEL@prompt (repeatable)",
    )
    parser.add_argument(
        "-J",
        "--ask-vault-pass",
        action="store_true",
        help="ask for the vault password on the terminal (refused without one)",
    )
    parser.add_argument("-f", "--forks", type=int, help="parallel hosts (at least 1)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument(
        "--fast",
        action="store_true",
        help="use mitogen's strategy (several times faster over SSH); also TECHOPS_FAST=1",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON at the end")
    parser.add_argument(
        "--node",
        help="run on this execution node of nodes.yml (ansible-runner "
        "streaming over SSH or Receptor)",
    )
    parser.add_argument("--reason", help="why this run happens (recorded in the ledger)")
    parser.add_argument("--ticket", help="change or incident ticket (recorded in the ledger)")
    parser.add_argument(
        "--change",
        metavar="ID",
        help="run an approved change (techops change): required on protected environments "
        "that require approvals; the run must be exactly what was approved",
    )
    parser.add_argument(
        "--schedule",
        metavar="JOB",
        help="run a job of schedules.yml through the "
        "gate (window, freeze, overlap), as the scheduler and timers do",
    )
    parser.add_argument(
        "--override-reason",
        help="with --schedule or a protected inventory: emergency override of a "
        "closed window or a freeze; recorded in the ledger and notified",
    )
    parser.add_argument(
        "--scheduled-for",
        help="with --schedule: the time the job was due "
        "(ISO 8601), for the misfire policy; default: its last due time",
    )


def handle(args: argparse.Namespace) -> int:
    at_least(args.forks, 1, "-f/--forks")
    if args.override_reason and any(m in args.override_reason for m in ("{{", "{%", "{#")):
        # The reason reaches the playbook as an extra var, which Ansible would template:
        # text that runs, outside what a change or a ticket approved.
        raise BadOptions(
            "--override-reason must be plain text: remove the template markers ({{, {%, {#)"
        )
    if args.schedule:
        if args.change:
            raise BadOptions(
                "--change is for runs by hand: a scheduled job is approved by its "
                "entry in schedules.yml"
            )
        if args.playbook:
            raise BadOptions(
                "give either a playbook or --schedule NAME (the job names its "
                "playbook in schedules.yml)"
            )
        return run_job(
            args.schedule,
            ledger=open_ledger(args, create=True),
            scheduled_for=parse_when(args.scheduled_for),
            override_reason=args.override_reason,
        )
    if not args.playbook:
        raise BadOptions("which playbook? e.g. techops run site (or --schedule NAME)")
    if args.scheduled_for:
        raise BadOptions("--scheduled-for goes with --schedule")
    vault = Vault.from_options(args.vault_password_file, args.vault_id, args.ask_vault_pass)
    request = RunRequest.resolve(
        args,
        check=args.check,
        diff=args.diff,
        extravars=parse_extravars(args.extra_vars or []),
        forks=args.forks,
        verbosity=args.verbose,
        fast=args.fast or os.environ.get("TECHOPS_FAST") == "1",
        vault=vault,
    )
    if args.node:
        nodes = load_nodes()
        if args.node not in nodes:
            raise UserError(
                f"no execution node {args.node!r} in nodes.yml "
                f"(nodes: {', '.join(sorted(nodes)) or 'none'})"
            )
        request.node = nodes[args.node]
    environment = environment_of(request.inventory, environments.load())
    if environment is None or not environment.protected:
        environment = None
        if args.change:
            raise BadOptions(
                f"--change goes with a protected inventory (environments.yml): "
                f"{request.inventory} is in no protected environment"
            )
        if args.override_reason:
            raise BadOptions(
                "--override-reason goes with --schedule or a protected inventory "
                f"(environments.yml): {request.inventory} is in no protected environment"
            )
    # The ledger must be usable before anything runs: a run that cannot be recorded
    # does not start.
    ledger = open_ledger(args, create=True)
    why = Why(reason=args.reason, ticket=args.ticket)
    if environment is not None:
        protected = run_protected(
            request,
            ledger,
            environment,
            why,
            override_reason=args.override_reason,
            change_id=args.change,
        )
        if protected is None:
            return RC_REFUSED
        result = protected
    else:
        result = run_recorded(request, ledger, why)
    if args.json:
        print(to_json(result))
    return result.rc
