"""A recorded run's host locks name its holder as the kernel knows the user."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from runner.core import identity
from runner.execution import launch
from runner.execution.request import RunRequest


class Taken(Exception):
    """Stops the run at its locks: the holder is what the test reads."""


def test_the_lock_holder_is_the_real_user_not_USER(ledger, monkeypatch, tmp_path):
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "mallory")
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    monkeypatch.setattr(identity, "LOGIN_UID_FILE", tmp_path / "no-loginuid")
    holders = []

    def run_lock(_root, _playbook, _hosts, holder):
        holders.append(holder)
        raise Taken

    monkeypatch.setattr(launch, "RunLock", run_lock)
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
