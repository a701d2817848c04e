"""Every host of an inventory with its groups, read as Ansible reads it: a group named under
`children:` only as a reference to a group listed elsewhere has that group's hosts."""

from __future__ import annotations

import pytest

from runner.core import inventory as inventories

# As inventories/production/hosts.yml: backup_clients refers to app, listed before it.
INVENTORY = """\
all:
  children:
    app:
      hosts:
        app1:
        app2:
    backup_clients:
      children:
        app:
    dr_standby:
      hosts:
        standby1:
    everything:
      children:
        backup_clients:
        dr_standby:
"""


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY)
    return str(path)


def test_a_group_referenced_under_children_has_its_hosts(inventory):
    hosts = inventories.inventory_hosts(inventory)
    assert hosts["app1"] >= {"all", "app", "backup_clients", "everything"}
    assert hosts["standby1"] >= {"all", "dr_standby", "everything"}
    assert "backup_clients" not in hosts["standby1"]


def test_the_fast_path_matches_ansible(inventory, monkeypatch):
    fast = inventories.inventory_hosts(inventory)
    limited = inventories.resolve_hosts(inventory, "backup_clients")
    monkeypatch.setattr(inventories, "yaml_groups", lambda _path: None)
    slow = inventories.inventory_hosts(inventory)
    assert set(fast) == set(slow)
    for host, groups in fast.items():
        assert groups == slow[host] - {"ungrouped"}, host
    assert limited == inventories.resolve_hosts(inventory, "backup_clients") == ["app1", "app2"]


def test_host_ranges_are_left_to_ansible(tmp_path):
    """app[1:2] names two hosts: read literally, two runs on app1 would take different
    locks."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    app:\n      hosts:\n        app[1:2].example.com:\n"
    )
    assert inventories.yaml_groups(inventory) is None
    hosts = inventories.resolve_hosts(str(inventory), "app")
    assert hosts == ["app1.example.com", "app2.example.com"]
