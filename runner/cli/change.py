"""Signed changes for protected environments that require approvals (environments.yml).

  techops change request site -i inventories/production --limit app \\
      --reason "..." --ticket CHG-1 [--not-before T] [--not-after T]   (signed with your key)
  techops change approve ID          (a second person, signing with their key)
  techops run site -i inventories/production --limit app --change ID
  techops change list | show ID | verify [ID...]

Keys sign through `ssh-keygen -Y sign`: --key, else TECHOPS_SIGNING_KEY, else
~/.ssh/id_ed25519. A public key works when its private half is in your ssh-agent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from runner.cli.common import Command, Parser, ledger_option, open_ledger
from runner.core.dates import parse_when
from runner.core.errors import BadOptions, UserError
from runner.execution.request import RunRequest, parse_extravars
from runner.ledger.redact import Redactor, secret_values
from runner.ledger.store import Ledger
from runner.scheduling import changes, environments, signing
from runner.scheduling.environments import Environment, environment_of

COMMAND = Command("change", "signed changes: request, approve, show, list, verify")
DEFAULT_KEY = "~/.ssh/id_ed25519"


def arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    request = sub.add_parser("request", help="request a change, signed with your key")
    request.add_argument("playbook", help="path, or a name under playbooks/ (e.g. site)")
    request.add_argument("-i", "--inventory", required=True, help="a protected inventory")
    request.add_argument("-l", "--limit")
    request.add_argument("-t", "--tags")
    request.add_argument("--skip-tags")
    request.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        metavar="VARS",
        help="as for techops run; the change pins their digest",
    )
    request.add_argument("--reason", required=True, help="why the change is made")
    request.add_argument("--ticket", required=True, help="the change ticket")
    request.add_argument("--not-before", help="ISO 8601 time with a zone (default: now)")
    request.add_argument(
        "--not-after",
        help="ISO 8601 time with a zone: the approval expires then (default: 24 h from "
        f"--not-before; at most {changes.MAX_VALIDITY.days} days)",
    )
    _key_option(request)

    approve = sub.add_parser("approve", help="approve someone else's change, signed")
    approve.add_argument("id")
    _key_option(approve)
    approve.add_argument(
        "--signature",
        metavar="FILE",
        help="an approval signed elsewhere: `techops change show ID --statement > s` then "
        "`ssh-keygen -Y sign -n techops-approve@ENV -f KEY s` gives s.sig",
    )

    show = sub.add_parser("show", help="a change: what, who, approvals, the command to run")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.add_argument(
        "--statement", action="store_true", help="print only the exact text an approver signs"
    )

    listing = sub.add_parser("list", help="every change and its status")
    listing.add_argument("--json", action="store_true")

    verify = sub.add_parser(
        "verify", help="check every signature from the ledger alone (no allowed-signers file)"
    )
    verify.add_argument("ids", nargs="*", metavar="ID")
    for action in (request, approve, show, listing, verify):
        ledger_option(action)


def _key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        help=f"your SSH key (default: TECHOPS_SIGNING_KEY, else {DEFAULT_KEY})",
    )


def handle(args: argparse.Namespace) -> int:
    if not args.action:
        raise BadOptions("which action? request, approve, show, list or verify")
    return int(ACTIONS[args.action](args))


def _request(args: argparse.Namespace) -> int:
    request = RunRequest.resolve(args, extravars=parse_extravars(args.extra_vars or []))
    environment = _environment(request.inventory)
    now = datetime.now(UTC)
    not_before = parse_when(args.not_before) or now
    not_after = parse_when(args.not_after) or not_before + changes.DEFAULT_VALIDITY
    key = _key(args.key)
    ledger = open_ledger(args, create=True)
    scrub = Redactor.for_run(request.extravars, secret_values(dict(os.environ))).text
    change = changes.request_change(
        ledger,
        request,
        environment,
        reason=args.reason,
        ticket=args.ticket,
        not_before=not_before,
        not_after=not_after,
        key=key,
        scrub=scrub,
        now=now,
    )
    print(
        f"change {change.id} requested by {change.requester['principal']} "
        f"({change.requester['fingerprint']}), valid {change.document['not_before']} to "
        f"{change.document['not_after']}\n"
        f"needs {environment.approvals} approval(s) by someone else: "
        f"techops change approve {change.id}\n"
        f"then: {change.command()}"
    )
    return 0


def _approve(args: argparse.Namespace) -> int:
    ledger = open_ledger(args)
    change = _load(ledger, args.id)
    environment = _named_environment(change.environment)
    signature = None
    if args.signature:
        if args.key:
            raise BadOptions("give either --key (sign here) or --signature (signed elsewhere)")
        try:
            signature = signing.parse_signature(Path(args.signature).read_text())
        except OSError as exc:
            raise BadOptions(f"--signature {args.signature}: {exc.strerror}") from None
    approval = changes.approve(
        ledger,
        change,
        environment,
        key=None if signature else _key(args.key),
        signature=signature,
    )
    have = len({a.principal for a in change.approvals})
    print(
        f"change {change.id} approved by {approval.principal} ({approval.fingerprint}): "
        f"{have} of {environment.approvals} approval(s)\nrun it with: {change.command()}"
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    change = _load(open_ledger(args), args.id)
    if args.statement:
        sys.stdout.write(change.statement())
        return 0
    required = _required(change.environment)
    view = _view(change, required)
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    doc = change.document
    lines = [
        f"change {change.id}: {view['status']}",
        f"  environment  {doc['environment']}",
        f"  playbook     {doc['playbook']}",
        f"  inventory    {doc['inventory']} (sha256 {doc['inventory_sha256'][:16]}…)",
        f"  limit        {doc['limit'] or '(all hosts)'}",
        f"  tags         {doc['tags'] or '-'}   skip-tags {doc['skip_tags'] or '-'}",
        f"  extra vars   sha256 {doc['extravars_sha256'][:16]}…",
        f"  commit       {doc['commit']}",
        f"  reason       {doc['reason']}",
        f"  ticket       {doc['ticket']}",
        f"  valid        {doc['not_before']} to {doc['not_after']}",
        f"  requested by {change.requester['principal']} ({change.requester['fingerprint']})",
    ]
    for approval in change.approvals:
        lines.append(f"  approved by  {approval.principal} ({approval.fingerprint})")
    for run in change.runs:
        lines.append(f"  ran          {run['run_id']}: {run['status']} (rc {run['rc']})")
    lines.append(f"  run with     {change.command()}")
    print("\n".join(lines))
    return 0


def _list(args: argparse.Namespace) -> int:
    found = changes.load_all(open_ledger(args))
    views = [_view(c, _required(c.environment)) for c in found]
    if args.json:
        print(json.dumps(views, indent=2))
        return 0
    if not views:
        print("no changes in the ledger")
    for view in views:
        doc = view["document"]
        print(
            f"{view['id']}  {view['status']:<17}  {doc['environment']}  {doc['playbook']}  "
            f"{doc['ticket']}  by {view['requested_by']['principal']}"
        )
    return 0


def _verify(args: argparse.Namespace) -> int:
    ledger = open_ledger(args)
    found = [_load(ledger, i) for i in args.ids] if args.ids else changes.load_all(ledger)
    failed = 0
    for change in found:
        for finding in changes.verify_offline(change):
            failed += not finding.ok
            mark = "ok  " if finding.ok else "FAIL"
            print(f"{mark} {finding.change} {finding.what}: {finding.detail}")
    print(
        f"{len(found)} change(s) checked from the ledger alone: "
        + ("every signature holds" if not failed else f"{failed} signature(s) do not hold")
    )
    return 1 if failed else 0


ACTIONS = {
    "request": _request,
    "approve": _approve,
    "show": _show,
    "list": _list,
    "verify": _verify,
}


def _view(change: changes.Change, required: int | None) -> dict:
    now = datetime.now(UTC)
    return {
        "id": change.id,
        "status": change.status(required, now) if required is not None else "environment gone",
        "document": change.document,
        "requested_by": change.requester,
        "approved_by": [
            {"principal": a.principal, "fingerprint": a.fingerprint, "at": a.created}
            for a in change.approvals
        ],
        "runs": change.runs,
        "command": change.command(),
    }


def _load(ledger: Ledger, change_id: str) -> changes.Change:
    change = changes.load(ledger, change_id)
    if change is None:
        raise UserError(f"there is no change {change_id} in the ledger (techops change list)")
    return change


def _environment(inventory: str) -> Environment:
    environment = environment_of(inventory, environments.load())
    if environment is None or not environment.protected:
        raise BadOptions(
            f"{inventory} is in no protected environment (environments.yml): a change "
            "request is for a protected one"
        )
    return environment


def _named_environment(name: str) -> Environment:
    for environment in environments.load():
        if environment.name == name:
            if environment.allowed_signers is None:
                raise UserError(
                    f"environment {name} no longer requires approvals (environments.yml)"
                )
            return environment
    raise UserError(f"environment {name} is no longer declared in environments.yml")


def _required(name: str) -> int | None:
    return next((e.approvals for e in environments.load() if e.name == name), None)


def _key(given: str | None) -> Path:
    env = os.environ.get("TECHOPS_SIGNING_KEY")
    source = "--key" if given else "TECHOPS_SIGNING_KEY" if env else "the default key"
    key = Path(given or env or DEFAULT_KEY).expanduser()
    if not key.is_file():
        raise BadOptions(
            f"signing key {key} ({source}) does not exist: give --key PATH, your SSH private "
            "key or its public key with the private key in ssh-agent"
        )
    return key
