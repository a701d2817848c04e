from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.core.errors import UserError
from runner.core.inventory import resolve_inventory
from runner.execution.request import RUN_MARKER, RunRequest, new_run_id, resolve_playbook


def test_playbook_found_by_name(repo_root):
    assert resolve_playbook("site") == repo_root / "playbooks" / "site.yml"


def test_missing_playbook_names_it_and_lists_the_available_ones():
    with pytest.raises(UserError) as info:
        resolve_playbook("nosuch")
    message = str(info.value)
    assert "'nosuch' not found" in message
    assert "site" in message
    assert info.value.exit_code == 1


def test_missing_lab_inventory_says_to_bring_the_lab_up(tmp_path, monkeypatch):
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as info:
        resolve_inventory("inventories/lab/hosts.yml")
    assert "techops lab up" in str(info.value)


def test_host_list_inventory_is_passed_through():
    assert resolve_inventory("web1,web2") == "web1,web2"


def test_runner_arguments_are_built_in_one_place(repo_root):
    request = RunRequest(
        playbook=repo_root / "playbooks/site.yml",
        inventory="h1,",
        limit="app",
        tags="ssh",
        check=True,
        diff=True,
        extravars={"x": 1},
        forks=7,
    )
    kwargs = request.runner_kwargs()
    assert kwargs["cmdline"] == "--check --diff --tags ssh"
    assert kwargs["limit"] == "app"
    assert kwargs["forks"] == 7
    # Extra vars travel in a private file (see test_vault), never in the arguments.
    assert "extravars" not in kwargs
    assert kwargs["envvars"]["ANSIBLE_CONFIG"] == str(repo_root / "ansible.cfg")
    # The tools next to this interpreter come first, whatever the caller's PATH.
    assert kwargs["envvars"]["PATH"].split(":")[0] == str(Path(__import__("sys").executable).parent)
    assert kwargs["private_data_dir"].endswith(request.run_id)
    assert kwargs["suppress_env_files"] is True


def test_ansible_playbook_is_told_which_run_techops_records(repo_root):
    """The ledger callback in ansible-playbook must not record a run of techops again: the
    marker names the run, and the ledger its recorder writes to (set when it starts)."""
    request = RunRequest(playbook=repo_root / "playbooks/site.yml", inventory="h1,")
    assert request.ansible_env()[RUN_MARKER] == request.run_id
    assert "TECHOPS_LEDGER" not in request.ansible_env()
    request.ledger_url = "sqlite:////srv/techops/ledger.sqlite3"
    envvars = request.runner_kwargs()["envvars"]
    assert envvars[RUN_MARKER] == request.run_id
    assert envvars["TECHOPS_LEDGER"] == "sqlite:////srv/techops/ledger.sqlite3"


def test_run_ids_sort_by_time_and_do_not_collide():
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", i) for i in ids)
