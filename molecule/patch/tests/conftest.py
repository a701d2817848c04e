"""Fixtures for the patch scenario: what the runs recorded, and the instances from outside.

prepare.yml and side_effect.yml write their records to the scenario's ephemeral directory
(results/): PID 1's start time before any run, the JSON record of the runs that had to
refuse or stop, and the targets' package versions after them. converge.yml runs the patch
through `techops run` into the ledger results/ledger.sqlite3: the evidence the role
published is read back from there, as an auditor reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RESULTS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "results"
CANARY = "patch-deb12"
OTHER = "patch-deb13"
TARGETS = (CANARY, OTHER)
FORCE_REASON = "molecule patch scenario: forced outside the window on purpose"


def run_record(name: str) -> dict:
    """The ansible.builtin.json record of a side_effect run."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def task_results(record: dict) -> list[tuple[str, str, str, dict]]:
    """(play, task, host, result) for every task result of a recorded run."""
    return [
        (play["play"]["name"], task["task"]["name"], host, result)
        for play in record["plays"]
        for task in play["tasks"]
        for host, result in task["hosts"].items()
    ]


LEDGER = f"sqlite:///{RESULTS / 'ledger.sqlite3'}"


def techops(*args: str) -> subprocess.CompletedProcess[str]:
    """The techops command of the project's virtualenv (the one running these tests)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "techops"), *args, "--ledger", LEDGER],
        cwd=os.environ["MOLECULE_PROJECT_DIRECTORY"],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def patch_runs() -> list[dict]:
    """The converge and idempotence runs of playbooks/patch.yml, oldest first."""
    listed = techops("runs", "--json", "--playbook", "patch")
    assert listed.returncode == 0, listed.stderr
    return sorted(json.loads(listed.stdout), key=lambda run: run["started"])


@pytest.fixture(scope="session")
def evidence(patch_runs) -> dict[str, dict]:
    """techops_evidence.patch of the first converge, per target, from the ledger."""
    recorded = patch_runs[0]["end"]["evidence"]
    return {h: recorded[h]["patch"] for h in TARGETS}


@pytest.fixture(scope="module")
def name(host) -> str:
    return host.backend.name
