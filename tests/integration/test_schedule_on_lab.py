"""Scheduled jobs on the lab: the gate at fire time, recorded decisions, time limits,
overlap, misfires, a single scheduler, and notifications."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from tests.helpers import REPO, techops


@pytest.fixture
def hook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", received
    server.shutdown()


@pytest.fixture
def env(lab_inventory, tmp_path, hook):
    now = datetime.now(UTC)
    closed_hour = (now.hour + 12) % 24
    url, _ = hook
    data = {
        "timezone": "UTC",
        "notify": {"on": ["failure", "skip", "refuse"], "webhook": url},
        "windows": [
            {"name": "always", "groups": ["all"], "cron": "* * * * *", "duration": "2h"},
            {
                "name": "later",
                "groups": ["all"],
                "cron": f"0 {closed_hour} * * *",
                "duration": "1h",
            },
        ],
        "freezes": [
            {
                "name": "standby-freeze",
                "groups": ["dr_standby"],
                "start": (now - timedelta(days=1)).date().isoformat(),
                "end": (now + timedelta(days=1)).date().isoformat(),
                "reason": "standby under audit",
            }
        ],
        "jobs": [
            {
                "name": "probe",
                "playbook": "tests/fixtures/playbooks/idempotent_probe.yml",
                "inventory": str(lab_inventory),
                "cron": "* * * * *",
                "window": "always",
                "limit": "app",
            },
            {
                "name": "probe-later",
                "playbook": "tests/fixtures/playbooks/idempotent_probe.yml",
                "inventory": str(lab_inventory),
                "cron": f"30 {closed_hour} * * *",
                "window": "later",
                "limit": "app1",
            },
            {
                "name": "probe-frozen",
                "playbook": "tests/fixtures/playbooks/idempotent_probe.yml",
                "inventory": str(lab_inventory),
                "cron": "* * * * *",
                "window": "always",
                "limit": "standby1",
            },
            {
                "name": "slow",
                "playbook": "tests/fixtures/playbooks/slow.yml",
                "inventory": str(lab_inventory),
                "cron": "* * * * *",
                "window": "always",
                "extra_vars": {"slow_seconds": 60},
                "max_runtime": "8s",
                "limit": "app2",
            },
        ],
    }
    path = tmp_path / "schedules.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return {
        "TECHOPS_SCHEDULES": str(path),
        "TECHOPS_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
    }


def decisions(env) -> list[dict]:
    from runner.ledger.store import Ledger

    ledger = Ledger.open(env["TECHOPS_LEDGER"])
    return [e.body for e in ledger.entries(kinds=["schedule.decision"])]


def runs(env) -> list[dict]:
    return json.loads(techops("runs", "--json", env=env).stdout)


def test_a_job_inside_its_window_fires_and_is_recorded_as_the_schedule(env):
    proc = techops("run", "--schedule", "probe", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert [d["action"] for d in decisions(env)] == ["fire"]
    recorded = runs(env)
    assert recorded[0]["who"] == "schedule:probe"
    assert recorded[0]["status"] == "successful"
    assert decisions(env)[0]["run_id"] == recorded[0]["run_id"]


def test_outside_its_window_it_is_refused_unless_overridden_with_a_reason(env, hook):
    proc = techops("run", "--schedule", "probe-later", "--scheduled-for", "now", env=env)
    assert proc.returncode == 3
    assert "outside window 'later'" in proc.stdout
    assert runs(env) == []
    forced = techops(
        "run", "--schedule", "probe-later", "--override-reason", "INC-42 emergency", env=env
    )
    assert forced.returncode == 0, forced.stderr[-2000:]
    actions = [(d["action"], d["override_reason"]) for d in decisions(env)]
    assert actions == [("refuse", None), ("fire", "INC-42 emergency")]
    assert runs(env)[0]["start"]["reason"] == "INC-42 emergency"
    # ...and reaches the playbook, whose own gate (patch.yml's) reads it.
    assert runs(env)[0]["start"]["extra_vars"] == {"techops_override_reason": "INC-42 emergency"}
    _, received = hook
    assert [r["action"] for r in received] == ["refuse"]


def test_a_freeze_refuses_a_job_on_the_frozen_group(env):
    proc = techops("run", "--schedule", "probe-frozen", env=env)
    assert proc.returncode == 3
    assert "change freeze 'standby-freeze'" in proc.stdout
    assert decisions(env)[0]["reason"].endswith("standby under audit")


def test_a_missed_start_beyond_its_grace_is_skipped_and_recorded(env):
    due = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    proc = techops("run", "--schedule", "probe", "--scheduled-for", due, env=env)
    assert proc.returncode == 0
    assert decisions(env)[0]["action"] == "skip"
    assert "beyond the misfire grace" in decisions(env)[0]["reason"]


def test_a_run_past_its_maximum_time_is_cancelled_and_recorded_as_timed_out(env):
    started = time.monotonic()
    proc = techops("run", "--schedule", "slow", env=env)
    assert proc.returncode == 124, proc.stdout + proc.stderr[-2000:]
    assert time.monotonic() - started < 45
    assert runs(env)[0]["status"] == "timeout"


def test_a_job_never_overlaps_with_itself(env):
    first = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "run", "--schedule", "slow"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            d["action"] == "fire" for d in decisions(env)
        ):
            time.sleep(0.5)
        # A later start of the same job (a second call for the very same due time would
        # only be told it was already decided, and record nothing).
        second = techops("run", "--schedule", "slow", "--scheduled-for", "now", env=env)
        assert second.returncode == 0
        assert "is still running" in second.stdout
    finally:
        first.wait(timeout=60)
    assert [d["action"] for d in decisions(env)] == ["fire", "skip"]


def test_only_one_scheduler_is_active(env):
    first = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "scheduler"],
        cwd=REPO,
        env={**os.environ, **env, "TECHOPS_SCHEDULES": env["TECHOPS_SCHEDULES"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = first.stdout.readline()
        assert "job(s) from" in line
        second = techops("scheduler", "--once", env=env)
        assert second.returncode == 1
        assert "another scheduler is already active" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert first.returncode == 0


def test_the_scheduler_fires_a_due_job_once_even_across_a_restart(env, lab_inventory, tmp_path):
    path = tmp_path / "one-job.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "timezone": "UTC",
                "windows": [{"name": "always", "cron": "* * * * *", "duration": "2h"}],
                "jobs": [
                    {
                        "name": "probe",
                        "playbook": "tests/fixtures/playbooks/idempotent_probe.yml",
                        "inventory": str(lab_inventory),
                        "cron": "* * * * *",
                        "window": "always",
                        "limit": "app1",
                        "misfire_grace": "10m",
                    }
                ],
            }
        )
    )
    one = {**env, "TECHOPS_SCHEDULES": str(path)}
    # Started twice: each start catches up the job's last due time; the second start
    # must see that it already fired (a restart never fires a job twice).
    for _ in range(2):
        proc = techops("scheduler", "--once", env=one)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    made = decisions(one)
    fired = [d for d in made if d["action"] == "fire"]
    assert len(fired) >= 1
    due_times = [d["scheduled_for"] for d in fired]
    assert len(due_times) == len(set(due_times)), made
    if len(made) > len(fired):
        assert any("never fires twice" in d["reason"] for d in made if d["action"] == "skip")
    recorded = runs(one)
    assert {r["who"] for r in recorded} == {"schedule:probe"}
    assert all(r["status"] == "successful" for r in recorded)
