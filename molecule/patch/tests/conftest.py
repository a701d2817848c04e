"""Fixtures for the patch scenario: what the runs recorded, and the instances from outside.

prepare.yml, side_effect.yml and converge.yml write their records to the scenario's
ephemeral directory (results/): PID 1's start time before any run, the JSON record of the
runs that had to refuse or stop, the targets' package versions after them, and the evidence
the role published on the first converge.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

RESULTS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "results"
CANARY = "patch-deb12"
OTHER = "patch-deb13"
TARGETS = (CANARY, OTHER)
FORCE_REASON = "molecule patch scenario: forced outside the window on purpose"


def container_address(name: str) -> str:
    """The container's IPv4 address on its podman network."""
    out = subprocess.run(
        ["podman", "inspect", "--format", "{{json .NetworkSettings.Networks}}", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for network in json.loads(out).values():
        if network.get("IPAddress"):
            return str(network["IPAddress"])
    raise AssertionError(f"container {name} has no address on a podman network")


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


@pytest.fixture(scope="session")
def evidence() -> dict[str, dict]:
    """techops_evidence.patch of the first converge, per target."""
    return {h: json.loads((RESULTS / f"evidence-{h}.json").read_text()) for h in TARGETS}


@pytest.fixture(scope="module")
def name(host) -> str:
    return host.backend.name
