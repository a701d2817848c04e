"""A run handed to an execution node over SSH with ansible-runner streaming comes back
and is recorded exactly as a local run; the Receptor path is checked up to the hand-over."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.execution.remote import Node, load_nodes
from tests.helpers import techops

from .conftest import LAB, ansible_output
from .test_vault_on_lab import Canaries, left_behind, plant


def test_a_run_on_the_node_comes_back_and_is_recorded_like_a_local_one(execution_node, tmp_path):
    env = {**execution_node, "TECHOPS_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite3'}"}
    remote = techops(
        "run",
        "tests/fixtures/playbooks/node_probe.yml",
        "-i",
        "probe,",
        "--node",
        "lab-node",
        "--json",
        env=env,
    )
    assert remote.returncode == 0, remote.stdout[-2000:] + remote.stderr[-2000:]
    assert "TASK [Read the executing machine's name] 1/1 hosts" in remote.stderr
    # The node finds the repository's callback plugins in the staged project.
    assert "Skipping callback plugin" not in ansible_output(json.loads(remote.stdout)["run_id"])
    local = techops(
        "run", "tests/fixtures/playbooks/node_probe.yml", "-i", "probe,", "--json", env=env
    )
    assert local.returncode == 0, local.stderr[-2000:]
    runs = json.loads(techops("runs", "--json", env=env).stdout)
    assert [r["status"] for r in runs] == ["successful", "successful"]
    there, here = runs
    assert there["start"]["node"] == "lab-node" and here["start"]["node"] is None
    # It really ran on the node, and the record has the same shape as a local run's.
    assert there["end"]["evidence"]["probe"]["node"]["ran_on"] == "backup1"
    assert here["end"]["evidence"]["probe"]["node"]["ran_on"] != "backup1"
    assert there["end"]["hosts"] == here["end"]["hosts"]
    assert there["end"]["events"]["count"] == here["end"]["events"]["count"]
    assert techops("audit", "verify", env=env).returncode == 0


def test_a_vaulted_run_on_the_node_leaves_no_secret_there_or_here(execution_node, tmp_path):
    """The password file is on the controller: the node's ansible-playbook gets the
    password typed into its prompt, and the extra vars in the job; neither stays on the
    node, and no secret stays here."""
    canaries = Canaries()
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        "all:\n  children:\n    app:\n      hosts:\n        probe:\n"
        "  vars:\n    ansible_connection: local\n"
        "    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    plant(inventory, canaries)
    password = tmp_path / "vault.pass"
    password.write_text(canaries.password)
    extra = tmp_path / "extra.yml"
    extra.write_text(f"extra_api_token: {canaries.extra}\n")
    ledger = tmp_path / "ledger.sqlite3"
    proc = techops(
        "run",
        "tests/fixtures/playbooks/vault_canary.yml",
        "-i",
        str(inventory),
        "--node",
        "lab-node",
        "--vault-id",
        f"lab@{password}",
        "-e",
        f"@{extra}",
        "--ledger",
        f"sqlite:///{ledger}",
        "--json",
        env=execution_node,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run_id = json.loads(proc.stdout[proc.stdout.index("{") :])["run_id"]
    blob = left_behind(run_id, ledger, inventory, [proc.stdout, proc.stderr])
    on_node = subprocess.run(
        [
            "podman",
            "exec",
            f"{LAB}-backup1",
            "grep",
            "-rlF",
            *(arg for canary in canaries.all() for arg in ("-e", canary)),
            "/tmp",
            "/var/tmp",
            "/home",
            "/root",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert on_node.stdout == "", on_node.stdout
    for canary in canaries.all():
        assert canary.encode() not in blob, f"{canary} leaked"


def test_an_unknown_node_is_one_clear_error(execution_node):
    proc = techops("run", "site", "-i", "probe,", "--node", "nowhere", env=execution_node)
    assert proc.returncode == 1
    assert "no execution node 'nowhere' in nodes.yml" in proc.stderr


def test_the_receptor_hand_over(execution_node, monkeypatch, tmp_path):
    """Everything up to the hand-over: the job is packed by transmit and given to
    receptorctl on stdin with the node's socket, work type and node id. (No Receptor mesh
    can be installed here; the README says so.)"""
    fake = tmp_path / "bin" / "receptorctl"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" > "$0.args"\ncat > "$0.payload"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{Path(sys.executable).parent}:/usr/bin:/bin")
    node = load_nodes(Path(execution_node["TECHOPS_NODES"]))["mesh"]
    assert node.worker_argv() == [
        str(fake),
        "--socket",
        "/run/receptor/receptor.sock",
        "work",
        "submit",
        "ansible-runner",
        "--node",
        "exec-1",
        "--payload",
        "-",
        "--follow",
    ]
    proc = techops(
        "run",
        "tests/fixtures/playbooks/node_probe.yml",
        "-i",
        "probe,",
        "--node",
        "mesh",
        "--ledger",
        f"sqlite:///{tmp_path / 'l.sqlite3'}",
        env={
            **execution_node,
            "PATH": f"{fake.parent}:{Path(sys.executable).parent}:/usr/bin:/bin",
        },
    )
    payload = Path(f"{fake}.payload").read_text().splitlines()
    assert json.loads(payload[0]).get("kwargs", {}).get("playbook") == (
        "tests/fixtures/playbooks/node_probe.yml"
    )
    assert any('"zipfile"' in line for line in payload)
    # receptorctl returned no results: the run fails cleanly and is recorded.
    assert proc.returncode != 0
    runs = json.loads(
        techops("runs", "--json", "--ledger", f"sqlite:///{tmp_path / 'l.sqlite3'}").stdout
    )
    assert runs[0]["status"] != "running"


def test_nodes_file_errors_are_clear(tmp_path):
    path = tmp_path / "nodes.yml"
    path.write_text("nodes:\n  - name: both\n    ssh: a@b\n    receptor: {socket: s, node: n}\n")
    with pytest.raises(Exception, match="give either ssh or receptor"):
        load_nodes(path)
    assert Node(name="n", ssh="a@b", ansible_runner="/x/ansible-runner").worker_argv()[-1] == (
        'PATH=/x:"$PATH" /x/ansible-runner worker'
    )
