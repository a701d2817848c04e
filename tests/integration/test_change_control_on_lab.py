"""Change control on the lab: a protected inventory of the test's own (the lab's hosts,
declared protected) and a freeze; runs by hand refused, overridden and recorded, with
their notifications; and two playbooks on one host at once, the second refused."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from runner.ledger.store import Ledger
from tests.helpers import REPO, techops

from .test_ledger_on_lab import _start_slow

PROBE = "tests/fixtures/playbooks/idempotent_probe.yml"


class Hook(BaseHTTPRequestHandler):
    """A webhook target on loopback: keeps what it is sent."""

    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def webhook():
    Hook.received.clear()
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", Hook.received
    server.shutdown()


@pytest.fixture
def protected_lab(lab_inventory, tmp_path, webhook):
    """The lab's hosts as a protected environment, in a freeze today, with windows that
    are always open (so that the freeze alone refuses)."""
    url, received = webhook
    inventory = tmp_path / "prodlike"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(lab_inventory, inventory / "hosts.yml")
    for source in (REPO / "inventories/lab/group_vars/all").glob("*.yml"):
        shutil.copy(source, inventory / "group_vars" / "all" / source.name)
    environments = tmp_path / "environments.yml"
    environments.write_text(
        yaml.safe_dump(
            {
                "environments": [
                    {"name": "prodlike", "inventories": [str(inventory)], "protected": True}
                ]
            }
        )
    )
    today = datetime.now(UTC).date()
    schedules = tmp_path / "schedules.yml"
    schedules.write_text(
        yaml.safe_dump(
            {
                "timezone": "UTC",
                "windows": [
                    {"name": "always", "groups": ["all"], "cron": "0 * * * *", "duration": "1h"}
                ],
                "freezes": [
                    {
                        "name": "test-freeze",
                        "groups": ["app"],
                        "start": str(today - timedelta(days=1)),
                        "end": str(today + timedelta(days=1)),
                        "reason": "a freeze made by the test",
                    }
                ],
                "notify": {"on": ["failure", "refuse", "override"], "webhook": url},
                "jobs": [],
            }
        )
    )
    env = {"TECHOPS_ENVIRONMENTS": str(environments), "TECHOPS_SCHEDULES": str(schedules)}
    return inventory / "hosts.yml", env, received


def decisions(ledger: str) -> list[dict]:
    return [e.body for e in Ledger.open(ledger).entries(kinds=["change.decision"])]


def test_a_protected_run_is_refused_in_a_freeze_then_overridden_on_the_record(
    protected_lab, tmp_path
):
    inventory, env, received = protected_lab
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    base = ["run", PROBE, "-i", str(inventory), "-l", "app1", "--ledger", ledger]

    no_ticket = techops(*base, "--reason", "probe", env=env)
    assert no_ticket.returncode == 5, no_ticket.stderr[-2000:]
    assert "needs --ticket" in no_ticket.stderr

    refused = techops(*base, "--reason", "probe", "--ticket", "CHG-1", env=env)
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert "app1: change freeze 'test-freeze'" in refused.stdout
    assert "PLAY" not in refused.stderr  # nothing ran

    looked = techops(*base, "--check", env=env)
    assert looked.returncode == 0, looked.stderr[-2000:]

    overridden = techops(
        *base,
        "--reason",
        "probe",
        "--ticket",
        "CHG-1",
        "--override-reason",
        "the test needs it now",
        "--json",
        env=env,
    )
    assert overridden.returncode == 0, overridden.stderr[-2000:]
    run_id = json.loads(overridden.stdout[overridden.stdout.index("{") :])["run_id"]

    made = decisions(ledger)
    assert [d["action"] for d in made] == ["refuse", "refuse", "fire", "fire"]
    assert (
        made[1]["blocked"] == {"app1": made[1]["blocked"]["app1"]}
        and "test-freeze" in made[1]["blocked"]["app1"]
    )
    assert made[2]["check"] is True and made[2]["decision"].startswith("check mode")
    assert made[3]["override_reason"] == "the test needs it now" and made[3]["run_id"] == run_id
    assert made[3]["ticket"] == "CHG-1" and made[3]["environment"] == "prodlike"
    runs = json.loads(techops("runs", "--json", "--ledger", ledger, check=True).stdout)
    assert {r["run_id"]: r["status"] for r in runs}[run_id] == "successful"
    # Both refusals and the override reached the webhook.
    assert [m["event"] for m in received] == ["refuse", "refuse", "override"]
    assert received[2]["override_reason"] == "the test needs it now"
    assert techops("audit", "verify", "--ledger", ledger).returncode == 0


def test_two_playbooks_never_touch_one_host_at_once(lab_inventory, tmp_path):
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    # The lock covers the hosts the run may touch: its inventory, its --limit applied.
    first = _start_slow(lab_inventory, ledger, seconds=40, limit="app")
    try:
        second = techops("run", PROBE, "-i", str(lab_inventory), "-l", "app1", "--ledger", ledger)
        assert second.returncode == 1, second.stderr[-2000:]
        assert "is already running slow.yml on app1" in second.stderr
        [refusal] = [e.body for e in Ledger.open(ledger).entries(kinds=["run.refused"])]
        assert refusal["playbook"] == "idempotent_probe.yml"
        assert refusal["held_by"]["playbook"] == "slow.yml"
        # Another host is free.
        other = techops(
            "run", PROBE, "-i", str(lab_inventory), "-l", "bastion1", "--ledger", ledger
        )
        assert other.returncode == 0, other.stderr[-2000:]
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert Path(tmp_path / "ledger.sqlite3").exists()
