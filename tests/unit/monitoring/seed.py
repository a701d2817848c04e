"""Incidents seeded as the receiver and the commands write them, at chosen times."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest

from runner.ledger import store
from runner.ledger.redact import Redactor
from runner.ledger.store import Ledger
from runner.monitoring.receiver import IncidentWriter, parse_payload
from tests.unit.monitoring.alerting import alert, payload


def notify(ledger: Ledger, *alerts: dict) -> int:
    """What the receiver does with one notification: how many alerts were new."""
    notification = parse_payload(json.dumps(payload(*alerts)).encode())
    return IncidentWriter(ledger, Redactor()).record(notification, "127.0.0.1")


def fire(ledger: Ledger, fingerprint: str, starts: str, **labels: str) -> str:
    """An alert fired; its incident id."""
    notify(ledger, alert(fingerprint=fingerprint, starts=starts, **labels))
    notification = parse_payload(
        json.dumps(payload(alert(fingerprint=fingerprint, starts=starts))).encode()
    )
    return notification.alerts[0].incident


def resolve(ledger: Ledger, fingerprint: str, starts: str, ends: str, **labels: str) -> None:
    """Alertmanager says the alert resolved at `ends`."""
    notify(
        ledger,
        alert(fingerprint=fingerprint, starts=starts, ends=ends, status="resolved", **labels),
    )


@contextlib.contextmanager
def at(monkeypatch: pytest.MonkeyPatch, when: str) -> Iterator[None]:
    """Entries appended inside are dated `when` (UTC), as if written then."""
    with monkeypatch.context() as patch:
        patch.setattr(store, "utcnow", lambda: when)
        yield
