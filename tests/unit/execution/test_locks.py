"""Host resolution for run locks: the fast path agrees with Ansible's own."""

from __future__ import annotations

import pytest

from runner.core import inventory as inventories
from runner.core.errors import UserError
from runner.execution import locks

INVENTORY = """\
all:
  vars: {ansible_user: ansible}
  children:
    lab:
      children:
        app:
          hosts:
            app1: {ansible_host: 10.0.0.3}
            app2:
        bastion:
          hosts:
            bastion1:
        backup_server:
          hosts:
            backup1:
"""


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY)
    return str(path)


@pytest.mark.parametrize(
    "limit",
    [
        None,
        "app",
        "app1",
        "app:bastion",
        "app,backup1",
        "lab",
        "app:!app2",
        "app*",
        "all:&app",
        "nosuch,app1",
    ],
)
def test_fast_path_matches_ansible(inventory, limit, monkeypatch):
    fast = inventories.resolve_hosts(inventory, limit)
    monkeypatch.setattr(inventories, "yaml_groups", lambda _path: None)
    assert sorted(fast) == sorted(inventories.resolve_hosts(inventory, limit))


def test_the_second_run_on_a_host_is_refused_and_names_the_first(tmp_path):
    first = locks.RunLock(tmp_path, "site.yml", ["app1", "app2"], {"run_id": "run-A"})
    first.acquire()
    try:
        with pytest.raises(UserError, match=r"run run-A is already running site\.yml on app2"):
            locks.RunLock(tmp_path, "site.yml", ["app2", "app3"], {"run_id": "run-B"}).acquire()
        # Another playbook, or other hosts, may run at the same time.
        locks.RunLock(tmp_path, "patch.yml", ["app1"], {"run_id": "run-C"}).acquire().release()
        locks.RunLock(tmp_path, "site.yml", ["app3"], {"run_id": "run-D"}).acquire().release()
    finally:
        first.release()
    locks.RunLock(tmp_path, "site.yml", ["app2"], {"run_id": "run-E"}).acquire().release()
