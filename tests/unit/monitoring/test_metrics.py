"""`GET /metrics` on loopback: the last run per playbook and host and the scheduled jobs'
last successes and limits, as the ledger and the schedules file say; a body the exposition
format's rules accept; the same token as `POST /alerts`; and a schedules file that cannot
be read costs the job metrics only."""

from __future__ import annotations

import http.client
import math
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from runner.ledger.store import Ledger
from runner.monitoring.metrics import CONTENT_TYPE, RunIndex
from runner.scheduling.model import RUNTIME_ALLOWANCE, START_ALLOWANCE, MaxIntervals
from tests.ledgers import add_run
from tests.unit.monitoring.alerting import TOKEN, Running, alert, payload, start, stop
from tests.unit.monitoring.seed import at

SCHEDULES = """\
timezone: UTC
jobs:
  - name: backup-daily
    playbook: playbooks/backup.yml
    cron: "30 1 * * *"
    changes_hosts: false
    max_runtime: 3h
    misfire_grace: 2h
  - name: monthly-report
    playbook: playbooks/report.yml
    cron: "0 3 1 * *"
    changes_hosts: false
    misfire_grace: 1h
  - name: paris-daily
    playbook: playbooks/site.yml
    timezone: Europe/Paris
    cron: "0 4 * * *"
    changes_hosts: false
  - name: paused
    playbook: playbooks/site.yml
    cron: "0 5 * * *"
    changes_hosts: false
    enabled: false
"""
# Each job's longest gap between starts, plus its misfire grace (15 min unless given),
# its max_runtime (else the allowance) and the start allowance.
EXPECTED_INTERVALS = {
    "backup-daily": timedelta(days=1) + timedelta(hours=2) + timedelta(hours=3),
    # The 1st of every month: the gap after a 31-day month.
    "monthly-report": timedelta(days=31) + timedelta(hours=1) + RUNTIME_ALLOWANCE,
    # A day is 25 hours long once a year in Paris (October's change back).
    "paris-daily": timedelta(hours=25) + timedelta(minutes=15) + RUNTIME_ALLOWANCE,
}


def job(name: str) -> dict:
    return {"kind": "schedule", "name": name, "user": {"name": "techops"}}


def unix(when: str) -> float:
    return datetime.fromisoformat(when).timestamp()


# ---------------------------------------------------------------------- a strict reader


METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
VALUE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass
class Parsed:
    help: str
    type: str
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def by(self, label: str) -> dict[str, float]:
        return {dict(labels)[label]: value for labels, value in self.samples.items()}


def _labels(text: str, where: str) -> tuple[dict[str, str], str]:
    """The label set at the start of `text` (after its "{"), and what follows its "}"."""
    labels: dict[str, str] = {}
    rest = text
    while not rest.startswith("}"):
        name, sep, rest = rest.partition('="')
        assert sep and LABEL_NAME.fullmatch(name), f"{where}: bad label name {name!r}"
        assert name not in labels, f"{where}: label {name} twice"
        value = []
        i = 0
        while True:
            assert i < len(rest), f"{where}: unterminated label value"
            char = rest[i]
            if char == '"':
                break
            if char == "\\":
                assert rest[i + 1 : i + 2] in ESCAPES, f"{where}: bad escape in a label value"
                value.append(ESCAPES[rest[i + 1]])
                i += 2
                continue
            value.append(char)
            i += 1
        labels[name] = "".join(value)
        rest = rest[i + 1 :]
        if rest.startswith(","):
            rest = rest[1:]
            assert not rest.startswith("}"), f"{where}: a trailing comma"
        else:
            assert rest.startswith("}"), f"{where}: labels not separated by commas"
    return labels, rest[1:]


def _help(text: str, where: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            assert text[i + 1 : i + 2] in ("\\", "n"), f"{where}: bad escape in HELP"
            out.append(ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_exposition(text: str) -> dict[str, Parsed]:
    """Prometheus' text format (0.0.4), read strictly: every family once, its HELP then its
    TYPE before its samples, its samples together, no series twice, names and escapes as
    the format allows them, values Go's ParseFloat reads, no timestamps."""
    assert text.endswith("\n") and "\r" not in text
    families: dict[str, Parsed] = {}
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}"
        assert line, f"{where}: an empty line"
        if line.startswith("# HELP "):
            name, _, rest = line[len("# HELP ") :].partition(" ")
            assert METRIC_NAME.fullmatch(name), f"{where}: bad metric name {name!r}"
            assert name not in families, f"{where}: family {name} twice"
            families[name] = Parsed(_help(rest, where), "")
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert name == current and not families[name].type, f"{where}: TYPE out of place"
            assert not families[name].samples, f"{where}: TYPE after samples"
            assert kind in TYPES, f"{where}: unknown type {kind!r}"
            families[name].type = kind
        else:
            assert not line.startswith("#"), f"{where}: a comment that is neither HELP nor TYPE"
            match = METRIC_NAME.match(line)
            assert match, f"{where}: no metric name"
            name, rest = match.group(0), line[match.end() :]
            assert name == current and families[name].type, f"{where}: {name} outside its family"
            labels: dict[str, str] = {}
            if rest.startswith("{"):
                labels, rest = _labels(rest[1:], where)
            assert rest.startswith(" "), f"{where}: no space before the value"
            value = rest[1:]
            assert VALUE.fullmatch(value), f"{where}: bad value {value!r}"
            key = tuple(sorted(labels.items()))
            assert key not in families[name].samples, f"{where}: series twice"
            families[name].samples[key] = float(value)
    return families


# ---------------------------------------------------------------------- a client


@dataclass
class Scrape:
    status: int
    text: str
    headers: dict[str, str]

    @property
    def families(self) -> dict[str, Parsed]:
        return parse_exposition(self.text)


def scrape(
    running: Running, *, token: str | None = TOKEN, method: str = "GET", path: str = "/metrics"
) -> Scrape:
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return Scrape(
        response.status, raw.decode("utf-8"), {k.lower(): v for k, v in response.getheaders()}
    )


@pytest.fixture
def schedules(tmp_path) -> Path:
    path = tmp_path / "schedules.yml"
    path.write_text(SCHEDULES)
    return path


@pytest.fixture
def served(ledger, schedules):
    """A receiver whose metrics are worked out afresh for every scrape."""
    running, thread = start(ledger, schedules=MaxIntervals(schedules), metrics_ttl=0)
    yield running
    stop(running, thread)


# ---------------------------------------------------------------------- the runs


def test_the_last_run_per_playbook_and_host_and_its_success(served, ledger, monkeypatch):
    with at(monkeypatch, "2026-11-02T10:00:00.000000+00:00"):
        add_run(ledger, "r1", {"app1": "ok", "app2": "changed"}, playbook="playbooks/site.yml")
    with at(monkeypatch, "2026-11-02T11:00:00.500000+00:00"):
        add_run(ledger, "r2", {"db1": "ok"}, playbook="playbooks/patch.yml")

    answer = scrape(served)
    assert answer.status == 200
    assert answer.headers["content-type"] == CONTENT_TYPE
    families = answer.families
    last = families["techops_run_last_timestamp_seconds"]
    success = families["techops_run_last_success"]
    assert last.type == success.type == "gauge"
    assert last.samples == {
        (("host", "app1"), ("playbook", "playbooks/site.yml")): unix("2026-11-02T10:00:00+00:00"),
        (("host", "app2"), ("playbook", "playbooks/site.yml")): unix("2026-11-02T10:00:00+00:00"),
        (("host", "db1"), ("playbook", "playbooks/patch.yml")): unix(
            "2026-11-02T11:00:00.500000+00:00"
        ),
    }
    assert set(success.samples.values()) == {1.0}
    generated = families["techops_metrics_generated_timestamp_seconds"]
    ((labels, value),) = generated.samples.items()
    assert labels == () and abs(value - time.time()) < 60


def test_a_later_failed_run_flips_the_hosts_success(served, ledger, monkeypatch):
    with at(monkeypatch, "2026-11-02T10:00:00+00:00"):
        add_run(ledger, "r1", {"app1": "ok", "app2": "ok"}, playbook="playbooks/site.yml")
    before = scrape(served).families["techops_run_last_success"].by("host")
    assert before == {"app1": 1.0, "app2": 1.0}

    with at(monkeypatch, "2026-11-03T10:00:00+00:00"):
        add_run(ledger, "r2", {"app1": "failed"}, status="failed", playbook="playbooks/site.yml")
    families = scrape(served).families
    assert families["techops_run_last_success"].by("host") == {"app1": 0.0, "app2": 1.0}
    assert families["techops_run_last_timestamp_seconds"].by("host") == {
        "app1": unix("2026-11-03T10:00:00+00:00"),
        "app2": unix("2026-11-02T10:00:00+00:00"),
    }

    # Succeeding again flips it back; a run of another playbook changes nothing here.
    with at(monkeypatch, "2026-11-04T10:00:00+00:00"):
        add_run(ledger, "r3", {"app1": "changed"}, playbook="playbooks/site.yml")
        add_run(ledger, "r4", {"app1": "unreachable"}, status="failed", playbook="other.yml")
    success = scrape(served).families["techops_run_last_success"].samples
    assert success[(("host", "app1"), ("playbook", "playbooks/site.yml"))] == 1.0
    assert success[(("host", "app1"), ("playbook", "other.yml"))] == 0.0


def test_a_run_that_did_not_reach_its_end_fails_every_host_it_locked(served, ledger):
    ledger.append(
        "run.started",
        "r-dead",
        {"run_id": "r-dead", "playbook": "playbooks/site.yml", "hosts": ["app1", "app2"]},
    )
    # Still running: not a finished run of anything yet.
    assert scrape(served).families["techops_run_last_success"].samples == {}
    ledger.append(
        "run.interrupted",
        "r-dead",
        {"run_id": "r-dead", "status": "interrupted", "detail": "killed"},
        seal_stored_events=True,
    )
    add_run(ledger, "r-timeout", {"db1": "ok"}, status="timeout", locked=["db1", "db2"])
    success = scrape(served).families["techops_run_last_success"]
    assert success.by("host") == {"app1": 0.0, "app2": 0.0, "db1": 0.0, "db2": 0.0}


# ---------------------------------------------------------------------- the jobs


def test_job_metrics_follow_the_schedules_file(served, ledger, monkeypatch):
    with at(monkeypatch, "2026-11-01T01:40:00+00:00"):
        add_run(
            ledger,
            "b1",
            {"backup1": "ok"},
            playbook="playbooks/backup.yml",
            who=job("backup-daily"),
        )
    with at(monkeypatch, "2026-11-02T01:45:00+00:00"):
        add_run(
            ledger,
            "b2",
            {"backup1": "ok"},
            playbook="playbooks/backup.yml",
            who=job("backup-daily"),
        )
    with at(monkeypatch, "2026-11-03T01:41:00+00:00"):
        # A failed run is no success; a run by hand of the same playbook is not the job's.
        add_run(
            ledger,
            "b3",
            {"backup1": "failed"},
            status="failed",
            playbook="playbooks/backup.yml",
            who=job("backup-daily"),
        )
        add_run(ledger, "b4", {"backup1": "ok"}, playbook="playbooks/backup.yml")
        add_run(ledger, "p1", {"app1": "ok"}, playbook="playbooks/site.yml", who=job("paused"))
        add_run(ledger, "x1", {"app1": "ok"}, who=job("removed-from-the-file"))

    families = scrape(served).families
    succeeded = families["techops_job_last_success_timestamp_seconds"].by("job_name")
    assert succeeded == {
        "backup-daily": unix("2026-11-02T01:45:00+00:00"),
        "paused": unix("2026-11-03T01:41:00+00:00"),
    }
    limits = families["techops_job_max_interval_seconds"].by("job_name")
    # paused is disabled: it may go any time without a success, and has no limit.
    assert limits == {
        name: (interval + START_ALLOWANCE).total_seconds()
        for name, interval in EXPECTED_INTERVALS.items()
    }
    # monthly-report never succeeded: its limit alone says it is overdue.
    assert "monthly-report" not in succeeded


def test_the_schedules_file_is_read_again_when_it_changes(served, schedules):
    assert "paused" not in scrape(served).families["techops_job_max_interval_seconds"].by(
        "job_name"
    )
    schedules.write_text(SCHEDULES.replace("enabled: false", "enabled: true") + "\n")
    limits = scrape(served).families["techops_job_max_interval_seconds"].by("job_name")
    assert (
        limits["paused"]
        == (
            timedelta(days=1) + timedelta(minutes=15) + RUNTIME_ALLOWANCE + START_ALLOWANCE
        ).total_seconds()
    )


@pytest.mark.parametrize(
    "text",
    [
        "jobs: [\n  - name: broken\n",  # not YAML
        "jobs:\n  - name: x\n    playbook: p.yml\n    cron: 'not a cron'\n",
        "- just a list\n",
        None,  # no file at all
    ],
    ids=["not yaml", "bad cron", "not a mapping", "missing"],
)
def test_a_schedules_file_that_cannot_be_read_costs_the_job_metrics_only(ledger, tmp_path, text):
    path = tmp_path / "schedules.yml"
    if text is not None:
        path.write_text(text)
    add_run(ledger, "r1", {"app1": "ok"})
    running, thread = start(ledger, schedules=MaxIntervals(path), metrics_ttl=0)
    try:
        for _ in range(3):
            answer = scrape(running)
            assert answer.status == 200
            families = answer.families
            assert families["techops_run_last_success"].by("host") == {"app1": 1.0}
            assert not any(name.startswith("techops_job_") for name in families)
        said = [line for line in running.log if "job metrics left out" in line]
        assert len(said) == 1, running.log  # once, not once per scrape
        assert said[0].startswith(f"alerts: metrics: schedules: {path}")
        # Mended, the job metrics are back.
        path.write_text(SCHEDULES)
        assert "techops_job_max_interval_seconds" in scrape(running).families
    finally:
        stop(running, thread)


# ---------------------------------------------------------------------- the format


def test_labels_are_escaped_and_redacted(served, ledger):
    odd = 'app"1\\x\nnew'
    add_run(
        ledger,
        "r1",
        {odd: "ok", f"{TOKEN}.example.com": "ok", "café": "failed"},
        status="failed",
        playbook='playbooks/"quoted"\\site.yml',
    )
    answer = scrape(served)
    assert TOKEN not in answer.text
    assert 'host="app\\"1\\\\x\\nnew"' in answer.text
    hosts = answer.families["techops_run_last_success"].by("host")
    assert hosts == {odd: 1.0, "**redacted**.example.com": 1.0, "café": 0.0}
    (labels,) = {
        dict(key)["playbook"] for key in answer.families["techops_run_last_success"].samples
    }
    assert labels == 'playbooks/"quoted"\\site.yml'


def test_the_body_parses_strictly_and_promtool_accepts_it(served, ledger, monkeypatch):
    with at(monkeypatch, "2026-11-02T01:40:00.123456+00:00"):
        add_run(
            ledger,
            "b1",
            {"backup1": "ok"},
            playbook="playbooks/backup.yml",
            who=job("backup-daily"),
        )
        add_run(ledger, "r1", {'we"ird\\host\n': "failed"}, status="failed")
    text = scrape(served).text
    families = parse_exposition(text)
    assert list(families) == [
        "techops_run_last_timestamp_seconds",
        "techops_run_last_success",
        "techops_job_last_success_timestamp_seconds",
        "techops_job_max_interval_seconds",
        "techops_metrics_generated_timestamp_seconds",
    ]
    assert all(f.help and f.type == "gauge" for f in families.values())
    assert all(math.isfinite(v) for f in families.values() for v in f.samples.values())
    promtool = os.environ.get("TECHOPS_PROMTOOL")
    if not promtool:
        pytest.skip(
            "TECHOPS_PROMTOOL is not set: give the path of promtool to check the body with it"
        )
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_empty_ledger_gives_the_families_and_when(served):
    families = scrape(served).families
    assert families["techops_run_last_timestamp_seconds"].samples == {}
    assert families["techops_job_last_success_timestamp_seconds"].samples == {}
    assert len(families["techops_job_max_interval_seconds"].samples) == 3
    assert len(families["techops_metrics_generated_timestamp_seconds"].samples) == 1


# ---------------------------------------------------------------------- access


@pytest.mark.parametrize(
    "options,status",
    [
        ({"token": None}, 401),
        ({"token": TOKEN[:-1] + "X"}, 401),
        ({"method": "POST"}, 405),
        ({"method": "HEAD"}, 405),
        ({"method": "PUT", "token": None}, 405),
        ({"path": "/metrics/x"}, 404),
        ({"path": "/"}, 404),
        ({"path": "/alerts"}, 405),
    ],
    ids=["no token", "wrong token", "POST", "HEAD", "PUT", "below", "root", "GET /alerts"],
)
def test_a_scrape_needs_the_token_and_get(served, ledger, options, status):
    add_run(ledger, "r1", {"app1": "ok"})
    answer = scrape(served, **options)
    assert answer.status == status
    assert "app1" not in answer.text
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")
    if status == 405:
        expected = "POST" if options.get("path") == "/alerts" else "GET"
        assert answer.headers["allow"] == expected
    assert scrape(served).status == 200


def test_the_token_never_reaches_the_log(served):
    scrape(served, token="wrong-token-value-123")
    scrape(served)
    assert " 401 " in served.log[0]
    assert served.log[1].startswith("alerts: 127.0.0.1 GET /metrics 200 metrics=new bytes=")
    assert not any(secret in line for line in served.log for secret in (TOKEN, "wrong-token"))


# ---------------------------------------------------------------------- the cost


def test_the_body_is_kept_for_its_time(ledger):
    running, thread = start(ledger, metrics_ttl=2.0)
    try:
        first = scrape(running).text
        add_run(ledger, "r1", {"app1": "ok"})
        assert scrape(running).text == first  # kept: the ledger was not read
        time.sleep(2.1)
        assert "app1" in scrape(running).text
        assert [line.split(" metrics=")[1].split()[0] for line in running.log] == [
            "new",
            "kept",
            "new",
        ]
    finally:
        stop(running, thread)


def test_only_the_entries_appended_since_the_last_look_are_read(ledger, monkeypatch):
    looks: list[tuple[tuple[str, ...] | None, int]] = []
    entries = ledger.entries

    def counted(**options):
        looks.append((options.get("kinds"), options.get("since_seq", 0)))
        return entries(**options)

    monkeypatch.setattr(ledger, "entries", counted)
    index = RunIndex(ledger)
    add_run(ledger, "r1", {"app1": "ok"})
    ledger.append("incident.fired", "inc-1", {"incident": "inc-1"})
    assert index.update() == 2
    add_run(ledger, "r2", {"app1": "failed"}, status="failed")
    assert index.update() == 2
    assert index.update() == 0
    assert [since for _, since in looks] == [0, 1, 4]  # each from the last run entry read
    assert all(kinds == ("run.started", "run.finished", "run.interrupted") for kinds, _ in looks)
    assert index.hosts[("site.yml", "app1")].success is False


def test_a_ledger_replaced_under_the_receiver_is_read_again_whole(tmp_path):
    first = Ledger.open(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    other = Ledger.open(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    try:
        add_run(first, "r1", {"app1": "ok"})
        add_run(first, "r2", {"app2": "ok"})
        add_run(other, "r9", {"db1": "failed"}, status="failed")
        add_run(other, "r10", {"db2": "ok"})
        index = RunIndex(first)
        index.update()
        index.ledger = other  # a restored backup, another file at the same URL
        index.update()
        assert {host for _, host in index.hosts} == {"db1", "db2"}
    finally:
        first.close()
        other.close()


def test_a_scrape_kept_waiting_never_holds_up_the_alerts(served, monkeypatch):
    monkeypatch.setattr("runner.monitoring.receiver.REQUEST_TIMEOUT_S", 0.5)
    held = served.server.metrics._lock
    held.acquire()  # a scrape working the metrics out, for as long as this test likes
    try:
        waiting: list[Scrape] = []
        scraper = threading.Thread(target=lambda: waiting.append(scrape(served)))
        scraper.start()
        began = time.monotonic()
        assert served.post(payload(alert())).status == 200
        assert time.monotonic() - began < 2
        scraper.join(timeout=10)
        (answer,) = waiting
        assert answer.status == 503 and answer.headers["retry-after"]
    finally:
        held.release()
    assert scrape(served).status == 200
