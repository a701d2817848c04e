"""Fixtures for the backup scenario: commands inside the instances, and the playbooks.

Tests act as an operator would: they run the repository's playbooks (backup, drill,
rollback) with ansible-playbook over SSH, or through `techops run` into the scenario's
ledger as scheduled jobs do (the fault cases, whose failed runs must be on the record),
and look at the hosts from outside (podman exec).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SERVER, APP, STANDBY = "backup-server", "backup-app", "backup-standby"


def sh(container: str, command: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """Run a shell command inside an instance, as root."""
    return subprocess.run(
        ["podman", "exec", container, "/bin/bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class PlaybookRun:
    """A finished ansible-playbook run: return code, output and published evidence."""

    def __init__(self, process: subprocess.CompletedProcess[str]):
        self.rc = process.returncode
        self.output = process.stdout + process.stderr
        try:
            start = process.stdout.index("{")
            self.result = json.loads(process.stdout[start:])
        except ValueError:
            self.result = {}

    def evidence(self, host: str) -> dict:
        return self.result.get("custom_stats", {}).get(host, {}).get("techops_evidence", {})

    def messages(self) -> str:
        """Every task message of the run, joined (where failures explain themselves)."""
        found = []
        for play in self.result.get("plays", []):
            for task in play.get("tasks", []):
                for outcome in task.get("hosts", {}).values():
                    if outcome.get("msg"):
                        found.append(str(outcome["msg"]))
        return "\n".join(found)


LEDGER = f"sqlite:///{EPHEMERAL / 'ledger.sqlite3'}"


class RecordedRun:
    """A finished `techops run`: return code, output, and its record in the ledger (the
    status, the evidence and the failed tasks' messages, as an auditor reads them)."""

    def __init__(self, process: subprocess.CompletedProcess[str]):
        self.rc = process.returncode
        self.output = process.stdout + process.stderr
        run_id = json.loads(process.stdout[process.stdout.index("{") :])["run_id"]
        listed = subprocess.run(
            [str(Path(sys.executable).parent / "techops"), "runs", "--json", "--ledger", LEDGER],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        )
        self.record = next(r for r in json.loads(listed.stdout) if r["run_id"] == run_id)
        self.status = self.record["status"]

    def evidence(self, host: str) -> dict:
        return (self.record["end"].get("evidence") or {}).get(host, {})

    def messages(self) -> str:
        return "\n".join(str(t.get("msg")) for t in self.record["end"].get("failed_tasks") or [])


@pytest.fixture(scope="session")
def recorded():
    """Run playbooks/NAME.yml through `techops run`, recorded in the scenario's ledger."""
    from runner.execution.request import fact_cache_dir

    # These instances are new machines under old names: facts techops cached for an
    # earlier run of the scenario (host keys among them) must not be reused.
    shutil.rmtree(fact_cache_dir(str((EPHEMERAL / "ssh-inventory.yml").resolve())), True)

    def run(name: str, *args: str) -> RecordedRun:
        command = [
            str(Path(sys.executable).parent / "techops"),
            "run",
            name,
            "-i",
            str(EPHEMERAL / "ssh-inventory.yml"),
            "-e",
            f"@{SCENARIO / 'vars' / 'scenario.yml'}",
            *args,
            "--ledger",
            LEDGER,
            "--json",
        ]
        process = subprocess.run(
            command, capture_output=True, text=True, cwd=REPO, timeout=300, check=False
        )
        return RecordedRun(process)

    return run


@pytest.fixture(scope="session")
def playbook():
    """Run playbooks/NAME.yml against the instances, with the scenario's variables."""

    def run(name: str, *args: str) -> PlaybookRun:
        env = dict(os.environ)
        env.update(
            {
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
                "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
                "ANSIBLE_SHOW_CUSTOM_STATS": "true",
                "ANSIBLE_HOST_KEY_CHECKING": "false",
                # Facts from this run only: a cache could hold an earlier instance's host keys.
                "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
            }
        )
        command = [
            "ansible-playbook",
            "-i",
            str(EPHEMERAL / "ssh-inventory.yml"),
            "-e",
            f"@{SCENARIO / 'vars' / 'scenario.yml'}",
            str(REPO / "playbooks" / f"{name}.yml"),
            *args,
        ]
        process = subprocess.run(
            command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False
        )
        return PlaybookRun(process)

    return run


@pytest.fixture(scope="session")
def adhoc():
    """Run one of the repository's modules on an instance (as root) and return its result."""

    def run(host: str, module: str, args: str) -> dict:
        env = dict(os.environ)
        env.update(
            {
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
                "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true",
                "ANSIBLE_HOST_KEY_CHECKING": "false",
            }
        )
        command = ["ansible", "-i", str(EPHEMERAL / "ssh-inventory.yml"), host, "-b"]
        command += ["-m", module, "-a", args]
        process = subprocess.run(
            command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False
        )
        output = json.loads(process.stdout[process.stdout.index("{") :])
        return output["plays"][0]["tasks"][0]["hosts"][host]

    return run


BORG_CLIENT_ENV = (
    "BORG_PASSCOMMAND='cat /etc/techops-backup/passphrase' "
    "BORG_RSH='ssh -i /etc/techops-backup/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
    "-o UserKnownHostsFile=/etc/techops-backup/known_hosts -o StrictHostKeyChecking=yes' "
)
REPOSITORY = "ssh://borg@backup-server:22/srv/borg/backup-app/repo"


def client_borg(args: str) -> subprocess.CompletedProcess[str]:
    """borg on the application host, with its own (append-only) key."""
    return sh(APP, f"{BORG_CLIENT_ENV} borg {args}")


def archive_names() -> list[str]:
    listing = client_borg(f"list --short {REPOSITORY}")
    assert listing.returncode == 0, listing.stderr
    return listing.stdout.split()
