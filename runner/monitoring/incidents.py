"""Incidents as the ledger records them, and what people add to them.

One incident is one firing of one alert: Alertmanager's fingerprint of the alert (a hash of
its labels) and the alert's `startsAt`, which Prometheus keeps for as long as the alert stays
active. The same alert firing again later starts at another time, and is another incident.
Its id is derived from those two alone, so every notification of the same firing, from
whichever Alertmanager and however often repeated, names the same incident, and the
ledger's run id column carries it.

The entries of an incident:

- `incident.fired` and `incident.resolved`: what Alertmanager said, written by the alert
  receiver (runner.monitoring.receiver), each at most once per incident;
- `incident.acked`: someone acknowledged it (`techops incident ack`), at most once, and only
  while it is unresolved;
- `incident.noted`: what someone did or found, any number;
- `incident.closed`: someone resolved it (`techops incident resolve`), at most once, naming
  the runs that fixed it. Alertmanager usually says an alert resolved minutes after the fix
  took effect, before anyone has typed a command, so a person may still close an incident
  Alertmanager resolved: both facts are kept, and the incident counts as resolved at the
  earlier of the two.

Every once-only entry is appended on condition, under the ledger's append lock
(`Ledger.append(unless=...)`), so two people, or two receivers, cannot both record it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.core.errors import UserError
from runner.ledger.store import AlreadyRecorded, Entry, Ledger
from runner.reports.model import by_id_or_prefix, find_run, load_runs

FIRED = "incident.fired"
RESOLVED = "incident.resolved"
ACKED = "incident.acked"
NOTED = "incident.noted"
CLOSED = "incident.closed"
# What Alertmanager says of an alert; what people say of an incident.
ALERT_KINDS = (FIRED, RESOLVED)
KINDS = (FIRED, RESOLVED, ACKED, NOTED, CLOSED)
# The prefix of every incident id: `inc-20261208-5f0c2a91b3`.
PREFIX = "inc-"


def incident_id(fingerprint: str, starts_at: datetime) -> str:
    """The id of one firing of an alert: the day it started (UTC, to read and sort) and a
    digest of the fingerprint and the start instant. The instant is normalised to UTC
    microseconds first, so the same start written with another offset or more digits of
    a second names the same incident."""
    moment = starts_at.astimezone(UTC)
    material = f"{fingerprint}\n{moment.isoformat(timespec='microseconds')}"
    digest = hashlib.sha256(material.encode()).hexdigest()[:10]
    return f"{PREFIX}{moment:%Y%m%d}-{digest}"


def moment(text: Any) -> datetime | None:
    """A time the ledger holds (ISO 8601, UTC unless it says otherwise); None for none."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def who_text(who: Any) -> str:
    """A person as reports show them: `user:alice (sudo from bob)`."""
    if not isinstance(who, dict):
        return "unknown"
    text = f"{who.get('kind', '?')}:{who.get('name', '?')}"
    if who.get("sudo_user"):
        text += f" (sudo from {who['sudo_user']})"
    login = who.get("login_user")
    if login and login not in (who.get("name"), who.get("sudo_user")):
        text += f" (logged in as {login})"
    return text


def host_of(labels: dict[str, Any]) -> str | None:
    """The host an alert is about: its `host` label, else its `instance` without the port
    (`app1:9100` is app1). None when the alert names neither."""
    host = labels.get("host")
    if isinstance(host, str) and host:
        return host
    instance = labels.get("instance")
    if not isinstance(instance, str) or not instance:
        return None
    if instance.startswith("["):  # [2001:db8::1]:9100
        return instance[1 : instance.index("]")] if "]" in instance else instance
    name, sep, port = instance.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else instance


@dataclass
class Incident:
    """One incident and every entry the ledger holds of it, in the order written."""

    id: str
    entries: list[Entry] = field(default_factory=list)

    def _first(self, kind: str) -> Entry | None:
        return next((e for e in self.entries if e.kind == kind), None)

    @property
    def fired(self) -> Entry | None:
        return self._first(FIRED)

    @property
    def resolved(self) -> Entry | None:
        """Alertmanager's word that the alert resolved."""
        return self._first(RESOLVED)

    @property
    def acked(self) -> Entry | None:
        return self._first(ACKED)

    @property
    def closed(self) -> Entry | None:
        """A person's word that the incident is resolved."""
        return self._first(CLOSED)

    @property
    def notes(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == NOTED]

    @property
    def alert(self) -> dict[str, Any]:
        """The alert as Alertmanager first described it to the receiver."""
        first = self.fired or self.resolved
        return first.body if first else {}

    @property
    def labels(self) -> dict[str, Any]:
        labels = self.alert.get("labels")
        return labels if isinstance(labels, dict) else {}

    @property
    def annotations(self) -> dict[str, Any]:
        annotations = self.alert.get("annotations")
        return annotations if isinstance(annotations, dict) else {}

    @property
    def alertname(self) -> str | None:
        name = self.labels.get("alertname")
        return name if isinstance(name, str) else None

    @property
    def instance(self) -> str | None:
        instance = self.labels.get("instance")
        return instance if isinstance(instance, str) else None

    @property
    def host(self) -> str | None:
        return host_of(self.labels)

    @property
    def severity(self) -> str | None:
        severity = self.labels.get("severity")
        return severity if isinstance(severity, str) else None

    @property
    def runbook_url(self) -> str | None:
        url = self.annotations.get("runbook_url")
        return url if isinstance(url, str) and url else None

    @property
    def summary(self) -> str | None:
        for key in ("summary", "description"):
            text = self.annotations.get(key)
            if isinstance(text, str) and text:
                return text
        return None

    @property
    def started(self) -> datetime | None:
        """When the alert started firing, as Prometheus says (its `startsAt`)."""
        return moment(self.alert.get("starts_at"))

    @property
    def acked_at(self) -> datetime | None:
        return moment(self.acked.created) if self.acked else None

    @property
    def resolutions(self) -> list[tuple[datetime, str, Entry]]:
        """Each word that the incident is resolved, earliest first: (when, by whom, entry).
        Alertmanager's is the alert's own end (`endsAt`); a person's is when they said it."""
        found: list[tuple[datetime, str, Entry]] = []
        if self.resolved is not None:
            ended = moment(self.resolved.body.get("ends_at"))
            if ended is not None:
                found.append((ended, "Alertmanager", self.resolved))
        if self.closed is not None:
            closed = moment(self.closed.created)
            if closed is not None:
                found.append((closed, who_text(self.closed.body.get("who")), self.closed))
        return sorted(found, key=lambda r: r[0])

    @property
    def resolved_at(self) -> datetime | None:
        resolutions = self.resolutions
        return resolutions[0][0] if resolutions else None

    @property
    def is_resolved(self) -> bool:
        return self.resolved is not None or self.closed is not None

    @property
    def status(self) -> str:
        if self.is_resolved:
            return "resolved"
        return "acknowledged" if self.acked else "open"

    @property
    def time_to_ack(self) -> float | None:
        """Seconds from the alert's start to the acknowledgement; None if never acknowledged."""
        if self.started is None or self.acked_at is None:
            return None
        return (self.acked_at - self.started).total_seconds()

    @property
    def time_to_resolve(self) -> float | None:
        """Seconds from the alert's start to its first resolution; None while open."""
        if self.started is None or self.resolved_at is None:
            return None
        return (self.resolved_at - self.started).total_seconds()

    @property
    def runs(self) -> list[str]:
        """The runs that fixed it, as the person who resolved it named them."""
        runs = self.closed.body.get("runs") if self.closed else None
        return [r for r in runs if isinstance(r, str)] if isinstance(runs, list) else []


def load_incidents(ledger: Ledger) -> dict[str, Incident]:
    """Every incident the ledger holds, in the order they were first recorded. Entries of
    people about an id no alert entry names are left out: there is no incident to read."""
    found: dict[str, Incident] = {}
    for entry in ledger.entries(kinds=KINDS):
        incident = found.setdefault(entry.run_id, Incident(entry.run_id))
        incident.entries.append(entry)
    return {i: inc for i, inc in found.items() if inc.fired or inc.resolved}


def find_incident(incidents: dict[str, Incident], given: str, ledger: Ledger) -> Incident:
    """The incident with this id, or the one whose id starts with it."""
    return by_id_or_prefix(incidents, given, "incident", "techops incident list", ledger)


def _when(entry: Entry) -> str:
    return entry.created[:19].replace("T", " ") + " UTC"


def _refused(incident: Incident, err: AlreadyRecorded) -> UserError:
    """A once-only entry someone else wrote between our check and our append."""
    return UserError(
        f"incident {incident.id} got a {err.kind} entry meanwhile (ledger entry {err.seq}): "
        f"nothing was written (see techops incident show {incident.id})"
    )


def acknowledge(
    ledger: Ledger, incident: Incident, who: dict[str, Any], note: str | None = None
) -> Entry:
    """Record that someone acknowledged the incident: once, and only while it is unresolved
    (after that there is nothing left to acknowledge; a note says what was found)."""
    if incident.acked is not None:
        raise UserError(
            f"incident {incident.id} was already acknowledged by "
            f"{who_text(incident.acked.body.get('who'))} at {_when(incident.acked)}: "
            "nothing was written"
        )
    if incident.is_resolved:
        by = incident.resolutions[0][1] if incident.resolutions else "someone"
        raise UserError(
            f"incident {incident.id} is already resolved (by {by}): nothing to acknowledge, "
            f"nothing was written (add what you found: techops incident note {incident.id} TEXT)"
        )
    body = {"incident": incident.id, "who": who, "note": note}
    try:
        return ledger.append(ACKED, incident.id, body, unless=(ACKED, RESOLVED, CLOSED))
    except AlreadyRecorded as err:
        raise _refused(incident, err) from None


def add_note(ledger: Ledger, incident: Incident, who: dict[str, Any], text: str) -> Entry:
    """Record what someone did or found, at any time, resolved or not."""
    if not text.strip():
        raise UserError("a note needs some text: nothing was written")
    return ledger.append(NOTED, incident.id, {"incident": incident.id, "who": who, "note": text})


def known_runs(ledger: Ledger, given: Iterable[str]) -> list[str]:
    """The full ids of the runs named (each a run id or a unique prefix), in the order given;
    one line naming the first that is not a run in the ledger."""
    wanted = list(dict.fromkeys(given))
    if not wanted:
        return []
    runs = load_runs(ledger)
    return list(dict.fromkeys(find_run(runs, run_id, ledger).run_id for run_id in wanted))


def close(
    ledger: Ledger,
    incident: Incident,
    who: dict[str, Any],
    note: str | None = None,
    runs: Iterable[str] = (),
) -> Entry:
    """Record that someone resolved the incident, with the runs that fixed it: once. An
    incident Alertmanager already resolved may still be closed, so that who fixed it and
    how is on the record; its time to resolve stays the earlier word."""
    if incident.closed is not None:
        raise UserError(
            f"incident {incident.id} was already resolved by "
            f"{who_text(incident.closed.body.get('who'))} at {_when(incident.closed)}: "
            f"nothing was written (add to it: techops incident note {incident.id} TEXT)"
        )
    fixed_by = known_runs(ledger, runs)
    body = {"incident": incident.id, "who": who, "note": note, "runs": fixed_by}
    try:
        return ledger.append(CLOSED, incident.id, body, unless=(CLOSED,))
    except AlreadyRecorded as err:
        raise _refused(incident, err) from None


def describe(incident: Incident) -> dict[str, Any]:
    """An incident as `techops incident show --json`, `list --json` and the report give it:
    only what its entries say; a time that is not known is None."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": incident.id,
        "status": incident.status,
        "alert": incident.alertname,
        "instance": incident.instance,
        "host": incident.host,
        "severity": incident.severity,
        "summary": incident.summary,
        "fingerprint": incident.alert.get("fingerprint"),
        "fired": iso(incident.started),
        "acknowledged": iso(incident.acked_at),
        "acknowledged_by": who_text(incident.acked.body.get("who")) if incident.acked else None,
        "resolved": iso(incident.resolved_at),
        "resolved_by": incident.resolutions[0][1] if incident.resolutions else None,
        "resolutions": [
            {"at": iso(when), "by": by, "kind": entry.kind, "seq": entry.seq}
            for when, by, entry in incident.resolutions
        ],
        "time_to_ack_s": incident.time_to_ack,
        "time_to_resolve_s": incident.time_to_resolve,
        "runs": incident.runs,
        "runbook_url": incident.runbook_url,
        "generator_url": incident.alert.get("generator_url"),
        "labels": incident.labels,
        "annotations": incident.annotations,
        "notes": [
            {"at": e.created, "by": who_text(e.body.get("who")), "kind": e.kind, "text": text}
            for e in incident.entries
            if e.kind in (ACKED, NOTED, CLOSED) and (text := e.body.get("note"))
        ],
        "entries": [{"seq": e.seq, "kind": e.kind, "created": e.created} for e in incident.entries],
    }


def duration_text(seconds: float | None) -> str:
    """A duration as people read it: 45 s, 4 min 10 s, 2 h 05 min, 3 d 4 h."""
    if seconds is None:
        return ""
    sign = "-" if seconds < 0 else ""
    whole = round(abs(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days} d {hours} h"
    if hours:
        return f"{sign}{hours} h {minutes:02d} min"
    if minutes:
        return f"{sign}{minutes} min {secs:02d} s"
    return f"{sign}{secs} s"


def time_text(value: datetime | None) -> str:
    """An instant as the commands show it, in UTC to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""
