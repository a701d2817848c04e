"""playbooks/backup_maintain.yml refuses bad input before any borg command runs, with one
message that says what to do. (The maintenance itself, against real repositories, is tested
in the backup scenario: molecule/backup/tests/test_scenario.py.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.helpers import REPO, VENV_BIN

CANARY = "canary-backup-passphrase-6f1d"


def vaulted(name: str, value: str, tmp_path: Path) -> str:
    """`name: value` as ansible-vault encrypts it inline, with a password the run is not
    given."""
    password = tmp_path / "vault-password"
    password.write_text("not-given-to-the-run\n")
    encrypted = subprocess.run(
        [
            str(VENV_BIN / "ansible-vault"),
            "encrypt_string",
            "--vault-password-file",
            str(password),
            "--name",
            name,
            value,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return encrypted.stdout


def maintain(tmp_path: Path, client_vars: str) -> subprocess.CompletedProcess[str]:
    """The maintenance against one client on this machine (a local connection: nothing
    leaves it), recorded into a ledger of the test's own."""
    (tmp_path / "inventory.yml").write_text(
        "all:\n  children:\n    backup_server:\n      hosts:\n        server1:\n"
        "    backup_clients:\n      hosts:\n        client1:\n"
        "  vars:\n    ansible_connection: local\n"
        f"    ansible_python_interpreter: {VENV_BIN / 'python'}\n"
    )
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "client1.yml").write_text(client_vars)
    return subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory.yml"),
            str(REPO / "playbooks" / "backup_maintain.yml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "TECHOPS_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
            "HOME": str(tmp_path),
        },
    )


def failures(process: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """(task, message) of every failed task, in order."""
    output = json.loads(process.stdout[process.stdout.index("{") :])
    return [
        (task["task"]["name"], str(outcome.get("msg")))
        for play in output["plays"]
        for task in play["tasks"]
        for outcome in task["hosts"].values()
        if outcome.get("failed")
    ]


def test_a_maintenance_without_the_vault_password_stops_with_one_message(tmp_path):
    """Through techops, as operators and scheduled jobs run it: refused before anything runs."""
    maintain(tmp_path, vaulted("backup_passphrase", CANARY, tmp_path))  # writes the inventory
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    process = subprocess.run(
        [
            str(VENV_BIN / "techops"),
            "run",
            "playbooks/backup_maintain.yml",
            "-i",
            str(tmp_path / "inventory.yml"),
            "--ledger",
            ledger,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert process.returncode != 0
    lines = (process.stdout + process.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "no vault secrets found" in lines[0] and "nothing was run" in lines[0], lines
    assert CANARY not in process.stdout + process.stderr
    # Nothing ran on the controller's side: no key, no known_hosts, no borg record.
    assert not (tmp_path / ".ssh").exists() and not (tmp_path / ".local").exists()


def test_a_plain_run_without_the_vault_password_says_what_to_give(tmp_path):
    process = maintain(tmp_path, vaulted("backup_passphrase", CANARY, tmp_path))
    assert process.returncode != 0
    task, message = failures(process)[-1]
    assert task == "Stop with what the vault needs"
    assert "comes from the vault" in message and "--vault-password-file" in message, message
    assert CANARY not in process.stdout + process.stderr
    assert not (tmp_path / ".ssh").exists() and not (tmp_path / ".local").exists()


def test_a_short_passphrase_is_named(tmp_path):
    process = maintain(tmp_path, "backup_passphrase: short\n")
    found = failures(process)
    assert len(found) == 1 and "shorter than 12 characters" in found[0][1], found


def test_a_missing_maintenance_key_says_which_playbook_makes_it(tmp_path):
    process = maintain(tmp_path, f"backup_passphrase: {CANARY}\n")
    found = failures(process)
    assert len(found) == 1, found
    assert "No maintenance key for client1's repository" in found[0][1]
    assert "playbooks/backup.yml" in found[0][1]
    assert CANARY not in process.stdout + process.stderr
