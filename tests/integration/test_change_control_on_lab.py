"""Change control on the lab: a protected inventory of the test's own (the lab's hosts,
declared protected) and a freeze; runs by hand refused, overridden and recorded, with
their notifications; and two playbooks on one host at once, the second refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
LAB_ENVIRONMENT = {
    "name": "lab",
    "inventories": [str(REPO / "inventories/lab")],
    "protected": False,
}


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
                    {"name": "prodlike", "inventories": [str(inventory)], "protected": True},
                    # The lab itself stays what it is: the copy above names its hosts, and
                    # an inventory no environment declares would count as the copy's.
                    LAB_ENVIRONMENT,
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
        # Whatever the playbook: patching and the site run are refused on that host too.
        for playbook in ("patch", "site"):
            refused = techops(
                "run", playbook, "-i", str(lab_inventory), "-l", "app1", "--ledger", ledger
            )
            assert refused.returncode == 1, refused.stderr[-2000:]
            assert "is already running slow.yml on app1" in refused.stderr
        refusals = [e.body for e in Ledger.open(ledger).entries(kinds=["run.refused"])]
        assert [r["playbook"] for r in refusals] == [
            "idempotent_probe.yml",
            "patch.yml",
            "site.yml",
        ]
        assert {r["held_by"]["playbook"] for r in refusals} == {"slow.yml"}
        # Another host is free.
        other = techops(
            "run", PROBE, "-i", str(lab_inventory), "-l", "bastion1", "--ledger", ledger
        )
        assert other.returncode == 0, other.stderr[-2000:]
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert Path(tmp_path / "ledger.sqlite3").exists()


def _keypair(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


@pytest.fixture
def approvals_lab(lab_inventory, tmp_path, webhook):
    """The lab's hosts as a protected environment that runs signed changes only (one
    approval), windows always open and no freeze; alice and bob are allowed signers,
    carol is not."""
    url, received = webhook
    inventory = tmp_path / "prodlike"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(lab_inventory, inventory / "hosts.yml")
    for source in (REPO / "inventories/lab/group_vars/all").glob("*.yml"):
        shutil.copy(source, inventory / "group_vars" / "all" / source.name)
    keys = {name: _keypair(tmp_path, name) for name in ("alice", "bob", "carol")}
    signers = tmp_path / "allowed_signers"
    signers.write_text(
        "".join(
            f'{name}@example.com namespaces="techops-*@prodlike" '
            + " ".join(keys[name].with_suffix(".pub").read_text().split()[:2])
            + "\n"
            for name in ("alice", "bob")
        )
    )
    environments = tmp_path / "environments.yml"
    environments.write_text(
        yaml.safe_dump(
            {
                "environments": [
                    {
                        "name": "prodlike",
                        "inventories": [str(inventory)],
                        "protected": True,
                        "approvals": 1,
                        "allowed_signers": str(signers),
                    },
                    LAB_ENVIRONMENT,
                ]
            }
        )
    )
    schedules = tmp_path / "schedules.yml"
    schedules.write_text(
        yaml.safe_dump(
            {
                "timezone": "UTC",
                "windows": [
                    {"name": "always", "groups": ["all"], "cron": "0 * * * *", "duration": "1h"}
                ],
                "notify": {"on": ["failure", "refuse", "override"], "webhook": url},
                "jobs": [],
            }
        )
    )
    env = {
        "TECHOPS_ENVIRONMENTS": str(environments),
        "TECHOPS_SCHEDULES": str(schedules),
        "TECHOPS_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
    }
    return inventory / "hosts.yml", keys, env, received


def test_a_signed_change_runs_only_as_approved_and_the_report_names_both_people(
    approvals_lab, tmp_path
):
    inventory, keys, env, received = approvals_lab
    target = [PROBE, "-i", str(inventory), "-l", "app1"]
    why = ["--reason", "rotate the probe", "--ticket", "CHG-77"]

    unsigned = techops("run", *target, *why, env=env)
    assert unsigned.returncode == 5, unsigned.stderr[-2000:]
    assert "runs approved changes only" in unsigned.stderr

    stranger = techops("change", "request", *target, *why, "--key", str(keys["carol"]), env=env)
    assert stranger.returncode != 0
    assert "is not in the allowed signers" in stranger.stderr

    asked = techops("change", "request", *target, *why, "--key", str(keys["alice"]), env=env)
    assert asked.returncode == 0, asked.stderr[-2000:]
    change_id = asked.stdout.split()[1]

    early = techops("run", *target, "--change", change_id, env=env)
    assert early.returncode == 3 and "has 0 of the 1 approval(s)" in early.stdout

    self_approved = techops("change", "approve", change_id, "--key", str(keys["alice"]), env=env)
    assert self_approved.returncode != 0
    assert "requested this change and cannot approve it" in self_approved.stderr
    unknown = techops("change", "approve", change_id, "--key", str(keys["carol"]), env=env)
    assert unknown.returncode != 0 and "is not in the allowed signers" in unknown.stderr

    approved = techops("change", "approve", change_id, "--key", str(keys["bob"]), env=env)
    assert approved.returncode == 0, approved.stderr[-2000:]

    wider = techops("run", PROBE, "-i", str(inventory), "-l", "app", "--change", change_id, env=env)
    assert wider.returncode == 3
    assert "limit: approved 'app1', this run 'app'" in wider.stdout
    assert "PLAY" not in wider.stderr  # nothing ran

    ran = techops("run", *target, "--change", change_id, "--json", env=env)
    assert ran.returncode == 0, ran.stderr[-2000:]
    run_id = json.loads(ran.stdout[ran.stdout.index("{") :])["run_id"]

    again = techops("run", *target, "--change", change_id, env=env)
    assert again.returncode == 3 and "already ran successfully" in again.stdout

    # The record: who asked, who approved with which key, and every refusal.
    ledger = env["TECHOPS_LEDGER"]
    made = decisions(ledger)
    assert [d["action"] for d in made] == ["refuse", "refuse", "refuse", "fire", "refuse"]
    fired = made[3]
    assert fired["run_id"] == run_id and fired["change"] == change_id
    assert fired["requested_by"]["principal"] == "alice@example.com"
    [approver] = fired["approved_by"]
    bob = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(keys["bob"].with_suffix(".pub"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert approver == {"principal": "bob@example.com", "fingerprint": bob, "seq": approver["seq"]}
    refused = [e.body for e in Ledger.open(ledger).entries(kinds=["change.refused"])]
    assert [r["step"] for r in refused] == ["request", "approve", "approve"]
    assert [m["action"] for m in received] == ["refuse"] * 4
    report = techops("report", run_id, "--format", "md", env=env, check=True).stdout
    assert "alice@example.com" in report and f"bob@example.com (`{bob}`)" in report

    # An auditor with the ledger alone (no allowed-signers file) checks both signatures.
    (tmp_path / "allowed_signers").unlink()
    verified = techops("change", "verify", change_id, env=env)
    assert verified.returncode == 0, verified.stdout
    assert "every signature holds" in verified.stdout
    assert techops("audit", "verify", env=env).returncode == 0


def test_plain_ansible_playbook_is_recorded_and_stopped_on_the_protected_lab(
    protected_lab, lab_inventory, tmp_path
):
    """ansible-playbook with the repository's ansible.cfg, outside techops: on the lab it
    runs and is recorded as unwrapped; on the protected copy of the lab it is stopped
    before its first task, and the refusal is on the record."""
    inventory, env, _ = protected_lab
    ledger = tmp_path / "ledger.sqlite3"
    plain = {
        **os.environ,
        **env,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "TECHOPS_LEDGER": f"sqlite:///{ledger}",
    }
    command = [str(Path(sys.executable).parent / "ansible-playbook"), PROBE, "-l", "app1"]

    def playbook(on: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, "-i", str(on)], cwd=REPO, env=plain, capture_output=True, text=True
        )

    ran = playbook(lab_inventory)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    stopped = playbook(inventory)
    assert stopped.returncode == 3, stopped.stdout[-2000:] + stopped.stderr[-2000:]
    assert "TASK [" not in stopped.stdout and "PLAY RECAP" not in stopped.stdout
    book = Ledger.open(f"sqlite:///{ledger}")
    [started] = [e.body for e in book.entries(kinds=["run.started"])]
    assert started["unwrapped"] is True and started["hosts"] == ["app1"]
    [refused] = [e.body for e in book.entries(kinds=["change.decision"])]
    assert refused["action"] == "refuse" and refused["environment"] == "prodlike"
    runs = json.loads(techops("runs", "--json", "--ledger", f"sqlite:///{ledger}").stdout)
    assert [r["status"] for r in runs] == ["successful"]
