"""Shared by the alert receiver's and the incidents' tests: Alertmanager's payloads, a
receiver serving on loopback in a thread, and a client for it. (Not a conftest: the
fixtures stay in the modules that use them.)"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.ledger.store import Ledger
from runner.monitoring.receiver import Receiver, make_server

TOKEN = "s3cr3t-token-0123456789abcdef"


def alert(
    fingerprint: str = "a1b2c3d4e5f60718",
    status: str = "firing",
    starts: str = "2026-11-02T10:00:00.123456789+01:00",
    ends: str = "0001-01-01T00:00:00Z",
    alertname: str = "HostDown",
    instance: str = "app1:9100",
    severity: str = "critical",
    **annotations: str,
) -> dict[str, Any]:
    """One alert as Alertmanager's webhook (version 4) describes it."""
    return {
        "status": status,
        "labels": {"alertname": alertname, "instance": instance, "severity": severity},
        "annotations": {"summary": f"{alertname} on {instance}", **annotations},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """A notification carrying these alerts, as Alertmanager sends it."""
    firing = any(a["status"] == "firing" for a in alerts)
    common = alerts[0]["labels"] if alerts else {}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HostDown"}',
        "truncatedAlerts": 0,
        "status": status or ("firing" if firing else "resolved"),
        "receiver": "techops",
        "groupLabels": {"alertname": common.get("alertname", "")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Running:
    """A receiver serving in a thread, and a client for it."""

    server: Receiver
    ledger: Ledger
    log: list[str]

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def count(self) -> int:
        return sum(1 for _ in self.ledger.entries())

    def post(
        self,
        body: bytes | dict[str, Any] | None,
        *,
        token: str | None = TOKEN,
        path: str = "/alerts",
        method: str = "POST",
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if content_type is not None:
            sent["Content-Type"] = content_type
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        parsed = json.loads(raw) if raw else {}
        return Answer(response.status, parsed, {k.lower(): v for k, v in response.getheaders()})


def open_ledger(tmp_path: Path) -> Ledger:
    """A SQLite ledger of the test's own."""
    return Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")


def start(ledger: Ledger, **options: Any) -> tuple[Running, threading.Thread]:
    log: list[str] = []
    server = make_server(("127.0.0.1", 0), token=TOKEN, ledger=ledger, log=log.append, **options)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return Running(server, ledger, log), thread


def stop(running: Running, thread: threading.Thread) -> None:
    running.server.shutdown()
    running.server.server_close()
    thread.join(timeout=10)
