"""Incidents from Alertmanager's alerts: list, show, acknowledge, note and resolve them.

  techops incident list [--open] [--json]
  techops incident show ID [--json]
  techops incident ack ID [--note TEXT]
  techops incident note ID TEXT
  techops incident resolve ID [--note TEXT] [--run RUN_ID ...]

An ID may be a unique prefix. Who acknowledged, noted or resolved is the user as the
kernel knows it. Each is written once (a second acknowledgement or resolution is refused,
nothing written); a note can be added at any time. See docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import json
import os

from runner.cli.common import Command, Parser, ledger_option, open_ledger
from runner.core.errors import BadOptions
from runner.core.identity import real_user
from runner.ledger.redact import Redactor, secret_values
from runner.monitoring import incidents
from runner.monitoring.incidents import (
    Incident,
    describe,
    duration_text,
    find_incident,
    load_incidents,
    time_text,
    who_text,
)
from runner.monitoring.receiver import printable

COMMAND = Command("incident", "incidents: list, show, acknowledge, note, resolve")


def arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    listing = sub.add_parser("list", help="every incident, oldest first")
    listing.add_argument("--open", action="store_true", help="only those not resolved")
    listing.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one incident and everything recorded of it")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    ack = sub.add_parser("ack", help="acknowledge an incident (once, while unresolved)")
    ack.add_argument("id")
    ack.add_argument("--note", help="what you are doing about it")
    note = sub.add_parser("note", help="add what was done or found")
    note.add_argument("id")
    note.add_argument("text")
    resolve = sub.add_parser("resolve", help="resolve an incident, naming the runs that fixed it")
    resolve.add_argument("id")
    resolve.add_argument("--note", help="what fixed it")
    resolve.add_argument(
        "--run",
        dest="runs",
        action="extend",
        nargs="+",
        default=[],
        metavar="RUN_ID",
        help="a run that fixed it (a run id or a unique prefix; repeat or list several)",
    )
    for action in (listing, show, ack, note, resolve):
        ledger_option(action)


def handle(args: argparse.Namespace) -> int:
    if not args.action:
        raise BadOptions("which action? list, show, ack, note or resolve")
    return int(ACTIONS[args.action](args))


def _scrub(text: str | None) -> str | None:
    """Free text typed by a person, with the secrets the environment knows removed."""
    if text is None:
        return None
    return Redactor(secret_values(dict(os.environ))).text(text)


def _list(args: argparse.Namespace) -> int:
    found = list(load_incidents(open_ledger(args)).values())
    if args.open:
        found = [i for i in found if not i.is_resolved]
    if args.json:
        print(json.dumps([describe(i) for i in found], indent=2))
        return 0
    if not found:
        print("no open incidents in the ledger" if args.open else "no incidents in the ledger")
    for incident in found:
        print(
            printable(
                f"{incident.id}  {incident.status:<12}  "
                f"{time_text(incident.started) or '?':<23}  "
                f"{incident.alertname or '(no alertname)'}  {incident.host or '-'}  "
                f"{incident.severity or '-'}"
            )
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    ledger = open_ledger(args)
    incident = find_incident(load_incidents(ledger), args.id, ledger)
    if args.json:
        print(json.dumps(describe(incident), indent=2))
        return 0
    # Labels and annotations come from whoever sent the alert: no control character of
    # theirs reaches the terminal.
    print("\n".join(printable(line) for line in _lines(incident)))
    return 0


def _lines(incident: Incident) -> list[str]:
    severity = f" (severity {incident.severity})" if incident.severity else ""
    lines = [
        f"incident {incident.id}: {incident.status}",
        f"  alert        {incident.alertname or '(no alertname)'}{severity}",
        f"  instance     {incident.instance or '-'} (host {incident.host or 'unknown'})",
    ]
    if incident.summary:
        lines.append(f"  summary      {incident.summary}")
    lines.append(f"  fired        {time_text(incident.started) or 'unknown'}")
    if incident.acked is not None:
        lines.append(
            f"  acknowledged {time_text(incident.acked_at)} by "
            f"{who_text(incident.acked.body.get('who'))} "
            f"(after {duration_text(incident.time_to_ack)})"
        )
    else:
        lines.append("  acknowledged not acknowledged")
    resolutions = incident.resolutions
    if not resolutions:
        lines.append("  resolved     not resolved")
    for n, (when, by, _) in enumerate(resolutions):
        label = "  resolved    " if n == 0 else "              "
        after = (
            f" (after {duration_text((when - incident.started).total_seconds())})"
            if incident.started
            else ""
        )
        lines.append(f"{label} {time_text(when)} by {by}{after}")
    if incident.runs:
        lines.append(f"  fixed by     {' '.join(incident.runs)}")
    if incident.runbook_url:
        lines.append(f"  runbook      {incident.runbook_url}")
    for note in describe(incident)["notes"]:
        when = note["at"][:19].replace("T", " ")
        lines.append(f"  note         {when} UTC {note['by']}: {note['text']}")
    return lines


def _ack(args: argparse.Namespace) -> int:
    ledger = open_ledger(args)
    incident = find_incident(load_incidents(ledger), args.id, ledger)
    entry = incidents.acknowledge(ledger, incident, real_user(), _scrub(args.note))
    print(f"incident {incident.id} acknowledged by {who_text(entry.body['who'])}")
    return 0


def _note(args: argparse.Namespace) -> int:
    ledger = open_ledger(args)
    incident = find_incident(load_incidents(ledger), args.id, ledger)
    entry = incidents.add_note(ledger, incident, real_user(), _scrub(args.text) or "")
    print(f"note added to incident {incident.id} (ledger entry {entry.seq})")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    ledger = open_ledger(args)
    incident = find_incident(load_incidents(ledger), args.id, ledger)
    entry = incidents.close(ledger, incident, real_user(), _scrub(args.note), args.runs)
    runs = entry.body["runs"]
    fixed = f", fixed by {' '.join(runs)}" if runs else ""
    print(f"incident {incident.id} resolved by {who_text(entry.body['who'])}{fixed}")
    return 0


ACTIONS = {
    "list": _list,
    "show": _show,
    "ack": _ack,
    "note": _note,
    "resolve": _resolve,
}
