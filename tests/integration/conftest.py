"""The lab for integration tests: its own lab name, so a developer's lab is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = "citest"


def techops(
    *args: str, check: bool = False, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"techops {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="session")
def lab_inventory() -> Path:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: run scripts/setup as root to enable the lab tests")
    techops("lab", "up", "--name", LAB, check=True)
    yield REPO / "inventories" / "lab" / f"hosts-{LAB}.yml"
    techops("lab", "down", "--name", LAB, check=True)
