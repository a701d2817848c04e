"""The alert receiver on loopback: what it records, what it refuses, and that it keeps
serving; every refusal leaves the ledger as it was."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from runner.monitoring.incidents import FIRED, RESOLVED, incident_id, load_incidents
from runner.monitoring.receiver import BadPayload, parse_payload
from tests.unit.monitoring.alerting import TOKEN, alert, open_ledger, payload, start, stop


@pytest.fixture
def ledger(tmp_path):
    the_ledger = open_ledger(tmp_path)
    yield the_ledger
    the_ledger.close()


@pytest.fixture
def receiver(ledger):
    running, thread = start(ledger)
    yield running
    stop(running, thread)


def test_a_firing_then_a_resolved_alert_make_one_incident(receiver):
    answer = receiver.post(payload(alert()))
    assert (answer.status, answer.body) == (200, {"alerts": 1, "new": 1, "already_recorded": 0})
    resolved = alert(status="resolved", ends="2026-11-02T09:30:00Z")
    answer = receiver.post(payload(resolved))
    assert (answer.status, answer.body["new"]) == (200, 1)

    entries = list(receiver.ledger.entries())
    assert [e.kind for e in entries] == [FIRED, RESOLVED]
    # One incident: the fingerprint and the start, written however Alertmanager writes it.
    assert {e.run_id for e in entries} == {
        incident_id(
            "a1b2c3d4e5f60718",
            parse_payload(json.dumps(payload(alert())).encode()).alerts[0].starts_at,
        )
    }
    fired = entries[0].body
    assert fired["starts_at"] == "2026-11-02T09:00:00.123456+00:00"
    assert fired["labels"]["instance"] == "app1:9100"
    assert fired["received_from"] == "127.0.0.1"
    incident = load_incidents(receiver.ledger)[entries[0].run_id]
    assert incident.status == "resolved"
    assert incident.time_to_resolve == pytest.approx(30 * 60 - 0.123456)
    assert receiver.ledger.verify().ok


def test_repeated_and_replayed_notifications_write_nothing_new(receiver):
    body = json.dumps(payload(alert(), alert(fingerprint="ffff000011112222"))).encode()
    assert receiver.post(body).body["new"] == 2
    before = receiver.count()
    # Alertmanager's repeat_interval, a retry, a replay: the same bytes again.
    for _ in range(3):
        answer = receiver.post(body)
        assert (answer.status, answer.body) == (
            200,
            {"alerts": 2, "new": 0, "already_recorded": 2},
        )
    # The same start written with another offset is the same incident.
    assert receiver.post(payload(alert(starts="2026-11-02T09:00:00.123456Z"))).body["new"] == 0
    assert receiver.count() == before
    # Resolved once, however often Alertmanager says so.
    resolved = payload(alert(status="resolved", ends="2026-11-02T09:30:00Z"))
    assert receiver.post(resolved).body["new"] == 1
    assert receiver.post(resolved).body["new"] == 0
    assert receiver.post(payload(alert())).body["new"] == 0
    assert receiver.count() == before + 1


def test_a_firing_delivered_after_its_resolution_is_recorded_and_stays_resolved(receiver):
    resolved = alert(status="resolved", ends="2026-11-02T09:30:00Z")
    assert receiver.post(payload(resolved)).body["new"] == 1
    assert receiver.post(payload(alert())).body["new"] == 1  # a retry, late
    (incident,) = load_incidents(receiver.ledger).values()
    assert [e.kind for e in incident.entries] == [RESOLVED, FIRED]
    assert incident.status == "resolved"


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BAD_BODIES = {
    "not json": b"{not json",
    "not utf-8": b'{"version": "4", "x": "\xff"}',
    "deeply nested": _nested(100_000),
    "NaN": b'{"version": "4", "status": NaN}',
    "a list": b"[]",
    "empty": b"",
    "no version": json.dumps({**payload(alert()), "version": None}).encode(),
    "version 3": json.dumps({**payload(alert()), "version": "3"}).encode(),
    "bad status": json.dumps({**payload(alert()), "status": "ok"}).encode(),
    "alerts not a list": json.dumps({**payload(alert()), "alerts": {}}).encode(),
    "no receiver": json.dumps(
        {k: v for k, v in payload(alert()).items() if k != "receiver"}
    ).encode(),
    "alert not an object": json.dumps({**payload(alert()), "alerts": ["x"]}).encode(),
    "no fingerprint": json.dumps(payload({**alert(), "fingerprint": ""})).encode(),
    "odd fingerprint": json.dumps(payload({**alert(), "fingerprint": "../x"})).encode(),
    "no startsAt": json.dumps(payload({**alert(), "startsAt": None})).encode(),
    "zero startsAt": json.dumps(payload(alert(starts="0001-01-01T00:00:00Z"))).encode(),
    "startsAt without zone": json.dumps(payload(alert(starts="2026-11-02T10:00:00"))).encode(),
    "startsAt not a time": json.dumps(payload(alert(starts="yesterday"))).encode(),
    "resolved without endsAt": json.dumps(payload(alert(status="resolved"))).encode(),
    "alert status": json.dumps(payload({**alert(), "status": "pending"})).encode(),
    "label not a string": json.dumps(payload({**alert(), "labels": {"a": 1}})).encode(),
    "annotations a list": json.dumps(payload({**alert(), "annotations": []})).encode(),
    "commonLabels odd": json.dumps({**payload(alert()), "commonLabels": {"a": None}}).encode(),
    "truncatedAlerts odd": json.dumps({**payload(alert()), "truncatedAlerts": -1}).encode(),
    # One good alert and one bad: nothing of the notification is written.
    "one bad alert of two": json.dumps(
        payload(alert(), {**alert(fingerprint="0000111122223333"), "startsAt": "x"})
    ).encode(),
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_body_that_is_not_alertmanagers_payload_is_refused(receiver, body):
    answer = receiver.post(body)
    assert answer.status == 400
    assert answer.body["error"]
    assert receiver.count() == 0
    # It keeps serving.
    assert receiver.post(payload(alert())).status == 200


REFUSED = {
    "no token": ({"token": None}, 401),
    "wrong token": ({"token": TOKEN[:-1] + "X"}, 401),
    "token with a suffix": ({"token": TOKEN + "X"}, 401),
    "empty token": ({"token": ""}, 401),
    "basic auth": ({"token": None, "headers": {"Authorization": f"Basic {TOKEN}"}}, 401),
    "wrong path": ({"path": "/alert"}, 404),
    "path below": ({"path": "/alerts/x"}, 404),
    "GET": ({"method": "GET"}, 405),
    "PUT": ({"method": "PUT"}, 405),
    "DELETE elsewhere": ({"method": "DELETE", "path": "/"}, 404),
    "form data": ({"content_type": "application/x-www-form-urlencoded"}, 415),
    "no content type": ({"content_type": None}, 415),
    "bad length": ({"headers": {"Content-Length": "12x"}}, 400),
}


@pytest.mark.parametrize("options,status", REFUSED.values(), ids=REFUSED.keys())
def test_a_request_that_is_not_alertmanagers_is_refused(receiver, options, status):
    answer = receiver.post(payload(alert()), **options)
    assert answer.status == status
    assert receiver.count() == 0
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")
    if status == 405:
        assert answer.headers["allow"] == "POST"
    assert receiver.post(payload(alert())).status == 200


def test_an_oversize_body_is_refused_before_it_is_read(ledger):
    running, thread = start(ledger, max_body=2048)
    try:
        big = payload(*(alert(fingerprint=f"{n:016x}") for n in range(50)))
        data = json.dumps(big).encode()
        assert len(data) > 2048
        answer = running.post(data)
        assert answer.status == 413
        # The client still sending its body gets the answer, and nothing of it is kept.
        assert running.post(b"x" * (8 * 1024 * 1024)).status == 413
        assert running.count() == 0
        assert running.post(payload(alert())).status == 200
    finally:
        stop(running, thread)


def test_a_chunked_body_or_no_length_is_refused(receiver):
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=30)
    conn.request(
        "POST",
        "/alerts",
        body=iter([json.dumps(payload(alert())).encode()]),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    assert conn.getresponse().status == 411
    conn.close()
    assert receiver.count() == 0


def test_a_client_that_stops_sending_does_not_stop_the_others(ledger, monkeypatch):
    monkeypatch.setattr("runner.monitoring.receiver.Handler.timeout", 0.5)
    running, thread = start(ledger)
    try:
        stalled = socket.create_connection(("127.0.0.1", running.port))
        stalled.sendall(
            b"POST /alerts HTTP/1.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 5000\r\n\r\n{{".encode()
        )
        assert running.post(payload(alert())).status == 200
        stalled.settimeout(5)
        assert stalled.recv(100).startswith(b"HTTP/1.0 503 ")
        stalled.close()
        assert running.count() == 1
    finally:
        stop(running, thread)


def test_secrets_in_labels_annotations_and_urls_are_redacted(receiver):
    leaky = alert(
        description=f"curl -H 'Authorization: Bearer {TOKEN}' failed",
        db_password="hunter2hunter2",
        dsn="postgresql://app:pa55word@db1/app",
    )
    leaky["generatorURL"] = "https://admin:gen3rated@prometheus:9090/graph"
    assert receiver.post(payload(leaky)).status == 200
    (entry,) = receiver.ledger.entries()
    stored = json.dumps(entry.body)
    for secret in (TOKEN, "hunter2hunter2", "pa55word", "gen3rated"):
        assert secret not in stored
    assert entry.body["annotations"]["db_password"] == "**redacted**"
    assert entry.body["annotations"]["dsn"] == "postgresql://app:**redacted**@db1/app"


def test_one_log_line_per_request_without_the_token_or_the_body(receiver):
    receiver.post(payload(alert()), path="/alerts?token=leaked-in-a-query")
    receiver.post(payload(alert()), token="wrong-token-value-123")
    receiver.post(b"{broken")
    assert len(receiver.log) == 3
    assert receiver.log[0].startswith("alerts: 127.0.0.1 POST /alerts 200 alerts=1 new=1")
    assert " 401 " in receiver.log[1]
    assert " 400 " in receiver.log[2]
    text = "\n".join(receiver.log)
    for leak in (TOKEN, "wrong-token-value-123", "leaked-in-a-query", "HostDown", "broken"):
        assert leak not in text


def test_a_bounded_burst_records_every_valid_alert_and_nothing_else(receiver):
    """200 requests from 8 threads on loopback: new alerts, replays of them, their
    resolutions, and bad requests of every kind, interleaved."""
    rng = random.Random(7)  # noqa: S311 (a repeatable order, not a secret)
    requests: list[tuple[str, dict]] = []
    expected: set[tuple[str, str]] = set()
    for n in range(60):
        fired = alert(fingerprint=f"{n:016x}", starts=f"2026-11-02T10:{n % 60:02d}:00Z")
        key = incident_id(
            f"{n:016x}", parse_payload(json.dumps(payload(fired)).encode()).alerts[0].starts_at
        )
        requests.append(("valid", {"body": payload(fired)}))
        expected.add((key, FIRED))
        if n % 3 == 0:
            requests.append(("valid", {"body": payload(fired)}))  # a replay
        if n % 4 == 0:
            resolved = {**fired, "status": "resolved", "endsAt": "2026-11-02T11:00:00Z"}
            requests.append(("valid", {"body": payload(resolved)}))
            expected.add((key, RESOLVED))
    bad = [
        {"body": payload(alert(fingerprint="badbadbadbadbad0")), "token": "nope-nope-nope-nope"},
        {"body": payload(alert(fingerprint="badbadbadbadbad1")), "token": None},
        {"body": b'{"version": "4", "alerts": [}'},
        {"body": payload({**alert(fingerprint="badbadbadbadbad2"), "startsAt": "never"})},
        {"body": payload(alert(fingerprint="badbadbadbadbad3")), "path": "/other"},
        {"body": payload(alert(fingerprint="badbadbadbadbad4")), "method": "PUT"},
        {"body": b"x" * (300 * 1024)},
    ]
    while len(requests) < 200:
        requests.append(("invalid", rng.choice(bad)))
    rng.shuffle(requests)
    assert len(requests) == 200

    def send(request: tuple[str, dict]) -> tuple[str, int]:
        kind, options = request
        options = dict(options)
        return kind, receiver.post(options.pop("body"), **options).status

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, requests))

    assert all(status == 200 for kind, status in results if kind == "valid")
    assert all(400 <= status < 500 for kind, status in results if kind == "invalid")
    recorded = [(e.run_id, e.kind) for e in receiver.ledger.entries()]
    assert len(recorded) == len(set(recorded))  # nothing twice
    assert set(recorded) == expected
    assert receiver.ledger.verify().ok
    assert len(receiver.log) == 200


def test_parse_payload_reads_alertmanagers_documented_example():
    notification = parse_payload(
        json.dumps(
            {
                "version": "4",
                "groupKey": '{}:{alertname="Test", job="prometheus24"}',
                "truncatedAlerts": 0,
                "status": "firing",
                "receiver": "webhook",
                "groupLabels": {"alertname": "Test"},
                "commonLabels": {"alertname": "Test"},
                "commonAnnotations": {"description": "some description"},
                "externalURL": "http://example.com:9093",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"alertname": "Test", "instance": "localhost:9090"},
                        "annotations": {"description": "some description"},
                        "startsAt": "2018-08-03T09:52:26.739266876+02:00",
                        "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://example.com:9090/graph?g0.expr=up",
                        "fingerprint": "c6eadffa33fcdf37",
                    }
                ],
            }
        ).encode()
    )
    (only,) = notification.alerts
    assert only.starts_at.isoformat() == "2018-08-03T07:52:26.739266+00:00"
    assert only.ends_at is None
    assert only.incident.startswith("inc-20180803-")
    with pytest.raises(BadPayload, match="version"):
        parse_payload(b'{"version": "5"}')


def test_a_trickling_client_is_cut_off_at_the_deadline(ledger, monkeypatch):
    """A byte every few seconds passes the per-read timeout: the whole request has a
    deadline, after which its connection is shut and its thread ends."""
    monkeypatch.setattr("runner.monitoring.receiver.REQUEST_DEADLINE_S", 1.0)
    running, thread = start(ledger)
    try:
        slow = socket.create_connection(("127.0.0.1", running.port))
        slow.settimeout(5)
        began = time.monotonic()
        with contextlib.suppress(OSError):
            for _ in range(20):
                slow.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.25)
        assert time.monotonic() - began < 4, "the trickling connection was not cut off"
        slow.close()
        assert running.post(payload(alert())).status == 200
    finally:
        stop(running, thread)


def test_connections_beyond_the_limit_are_closed_unanswered(ledger, monkeypatch):
    monkeypatch.setattr("runner.monitoring.receiver.MAX_CONNECTIONS", 2)
    running, thread = start(ledger)
    idle = []
    try:
        idle = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(2)]
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", running.port))
        extra.settimeout(3)
        assert extra.recv(100) == b""  # closed at once, no thread spent on it
        extra.close()
        for conn in idle:
            conn.close()
        time.sleep(0.2)
        assert running.post(payload(alert())).status == 200
        assert running.count() == 1
    finally:
        for conn in idle:
            conn.close()
        stop(running, thread)
