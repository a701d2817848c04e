"""A recorded run's host locks name its holder as the kernel knows the user."""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

import pytest

from runner.core import identity
from runner.execution import launch
from runner.execution.locks import HostBusy, host_lock
from runner.execution.request import RunRequest


class Taken(Exception):
    """Stops the run at its locks: the holder is what the test reads."""


def test_the_lock_holder_is_the_real_user_not_USER(ledger, monkeypatch, tmp_path):
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "mallory")
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    monkeypatch.setattr(identity, "LOGIN_UID_FILE", tmp_path / "no-loginuid")
    holders = []

    def run_lock(_ledger, _playbook, _hosts, holder):
        holders.append(holder)
        raise Taken

    monkeypatch.setattr(launch, "host_lock", run_lock)
    request = RunRequest(playbook=Path("site.yml"), inventory="h1,")
    with pytest.raises(Taken):
        launch.run_recorded(request, ledger)
    assert holders[0]["who"] == pwd.getpwuid(os.getuid()).pw_name != "mallory"
    scheduled = launch.Why(schedule="patch-weekly")
    with pytest.raises(Taken):
        launch.run_recorded(
            RunRequest(playbook=Path("site.yml"), inventory="h1,"), ledger, scheduled
        )
    assert holders[1]["who"] == "patch-weekly"


def test_a_run_refused_for_a_busy_host_leaves_a_record(ledger, monkeypatch, tmp_path):
    """Another playbook holds app1: the run does not start, says who holds the host, and
    the refusal is a ledger entry. The same path whatever holds the lock: files beside a
    SQLite ledger, leases in a PostgreSQL one."""
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    holding = host_lock(
        ledger,
        "/repo/playbooks/site.yml",
        ["app1"],
        {"run_id": "run-first", "who": "alice"},
    ).acquire()
    try:
        request = RunRequest(playbook=Path("/repo/playbooks/patch.yml"), inventory="app1,")
        why = launch.Why(reason="monthly patch", ticket="CHG-7")
        with pytest.raises(HostBusy, match=r"run run-first by alice is already running site\.yml"):
            launch.run_recorded(request, ledger, why)
    finally:
        holding.release()
    [refused] = list(ledger.entries(kinds=[launch.REFUSED]))
    assert refused.run_id == request.run_id
    assert refused.body["playbook"] == "patch.yml"
    assert refused.body["held_by"]["run_id"] == "run-first"
    assert refused.body["held_by"]["playbook"] == "site.yml"
    if ledger.dialect == "postgresql":
        assert refused.body["held_by"]["controller"] == socket.gethostname()
    assert refused.body["reason"] == "monthly patch" and refused.body["ticket"] == "CHG-7"
    assert ledger.verify().ok
