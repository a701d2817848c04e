from __future__ import annotations

import pytest

from runner.core import inventory as inventories
from runner.core.inventory import inventory_digest, inventory_files


def test_a_file_inventory_brings_its_group_and_host_vars(tmp_path):
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yml").write_text("all: {}\n")
    (tmp_path / "group_vars" / "all" / "vars.yml").write_text("a: 1\n")
    (tmp_path / "host_vars" / "h1.yml").write_text("b: 2\n")
    (tmp_path / "other.yml").write_text("not part of it\n")
    base, files = inventory_files(str(tmp_path / "hosts.yml"))
    assert base == tmp_path
    assert [str(f.relative_to(base)) for f in files] == [
        "hosts.yml",
        "group_vars/all/vars.yml",
        "host_vars/h1.yml",
    ]


def test_a_directory_inventory_is_all_its_files_and_a_host_list_none(tmp_path):
    (tmp_path / "inv" / "group_vars").mkdir(parents=True)
    (tmp_path / "inv" / "hosts").write_text("h1\n")
    (tmp_path / "inv" / "group_vars" / "all.yml").write_text("a: 1\n")
    base, files = inventory_files(str(tmp_path / "inv"))
    assert [str(f.relative_to(base)) for f in files] == ["group_vars/all.yml", "hosts"]
    assert inventory_files("web1,web2")[1] == []


def test_the_digest_covers_the_inventory_and_its_vars_and_nothing_else(tmp_path):
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("all:\n  hosts:\n    app1:\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("x: 1\n")
    first = inventory_digest(str(hosts))
    assert inventory_digest(str(hosts)) == first
    (tmp_path / "unrelated.txt").write_text("not part of the inventory\n")
    assert inventory_digest(str(hosts)) == first
    (tmp_path / "group_vars" / "all.yml").write_text("x: 2\n")
    assert inventory_digest(str(hosts)) != first
    assert inventory_digest("web1,web2,") != inventory_digest("web1,web3,")


# Host resolution for run locks: the fast path agrees with Ansible's own.
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
