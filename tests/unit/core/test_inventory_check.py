"""An inventory Ansible could not parse stops a run before anything starts, with one line
(Ansible alone warns, runs against no hosts and exits 0)."""

from __future__ import annotations

import pytest

from runner.core.errors import UserError
from runner.core.inventory import resolve_inventory
from tests.helpers import techops


def test_a_valid_yaml_inventory_is_accepted(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    app1:\n      secret: !vault |\n        $ANSIBLE_VAULT\n"
    )
    assert resolve_inventory(str(inventory)) == str(inventory.resolve())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("all:\n  hosts:\n    app1: {\n", "at line 4, column 1: not valid YAML"),
        ("- app1\n- app2\n", "expected a mapping of groups (all: {hosts: …}), found a list"),
        ("", "found an empty file"),
    ],
)
def test_a_malformed_yaml_inventory_is_refused_with_its_line(tmp_path, text, message):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(text)
    with pytest.raises(UserError) as caught:
        resolve_inventory(str(inventory))
    assert message in str(caught.value)
    assert str(inventory) in str(caught.value)


def test_an_undecodable_inventory_is_not_readable(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_bytes(b"all:\n  hosts: \xff\xfe\n")
    with pytest.raises(UserError, match="is not readable: not UTF-8 text"):
        resolve_inventory(str(inventory))


def test_ini_inventories_are_left_to_ansible(tmp_path):
    inventory = tmp_path / "hosts"
    inventory.write_text("[app]\napp1\n")
    assert resolve_inventory(str(inventory)) == str(inventory.resolve())


def test_an_inventory_only_ansible_can_judge_fails_the_run_instead_of_running_on_nothing(
    tmp_path,
):
    """An INI inventory Ansible cannot parse: the run is refused before it starts, in one
    line naming the inventory (plain ansible-playbook would warn, match no hosts and exit
    0), and nothing is recorded as a success."""
    import json

    inventory = tmp_path / "hosts"
    inventory.write_text("[app\napp1\n")
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    proc = techops("run", "site", "-i", str(inventory), "--ledger", ledger)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"techops: error: inventory {inventory}: "), last
    assert "nothing was run" in last and "vault" not in last
    listed = techops("runs", "--json", "--ledger", ledger, check=True)
    assert json.loads(listed.stdout) == []
