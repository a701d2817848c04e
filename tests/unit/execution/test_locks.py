"""Run locks: two runs never touch the same host at once, whatever their playbooks."""

from __future__ import annotations

import pytest

from runner.core.errors import UserError
from runner.execution import locks


def test_the_second_run_on_a_host_is_refused_and_names_the_first(tmp_path):
    first = locks.RunLock(tmp_path, "site.yml", ["app1", "app2"], {"run_id": "run-A"})
    first.acquire()
    try:
        with pytest.raises(UserError, match=r"run run-A is already running site\.yml on app2"):
            locks.RunLock(tmp_path, "site.yml", ["app2", "app3"], {"run_id": "run-B"}).acquire()
        # Another playbook on the same host conflicts too, and names what holds the host.
        with pytest.raises(UserError, match=r"run run-A is already running site\.yml on app1"):
            locks.RunLock(
                tmp_path, "/repo/playbooks/patch.yml", ["app1"], {"run_id": "run-C"}
            ).acquire()
        # Other hosts may run at the same time, whatever the playbook.
        locks.RunLock(tmp_path, "patch.yml", ["app3"], {"run_id": "run-D"}).acquire().release()
    finally:
        first.release()
    locks.RunLock(tmp_path, "site.yml", ["app2"], {"run_id": "run-E"}).acquire().release()
