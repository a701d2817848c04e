"""The lab for integration tests: its own lab name, so a developer's lab is never touched."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, techops

LAB = "citest"


def ansible_output(run_id: str) -> str:
    """What ansible-playbook itself printed in a run (its warnings included): the stdout of
    every event in the run's kept artifacts, local or returned by a node."""
    events = REPO / ".techops" / "runs" / run_id / "artifacts" / run_id / "job_events"
    files = sorted(events.glob("*.json"), key=lambda f: int(f.name.split("-", 1)[0]))
    assert files, f"no events kept for run {run_id} in {events}"
    return "\n".join(json.loads(f.read_text()).get("stdout", "") for f in files)


def lynis_index(container: str) -> int:
    """An independent scanner's rating of a lab host: lynis's hardening index (Debian's
    lynis, installed on the host when missing; a quick, non-interactive audit)."""
    scan = subprocess.run(
        ["podman", "exec", container, "sh", "-c",
         "command -v lynis >/dev/null || { apt-get update -qq && "
         "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lynis >/dev/null; } && "
         "lynis audit system --quick --no-colors"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    found = re.search(r"Hardening index : (\d+)", scan.stdout)
    assert scan.returncode == 0 and found, scan.stdout[-2000:] + scan.stderr[-2000:]
    return int(found[1])


# Lynis's index of app1 as `techops lab up` made it, before any playbook ran.
SCANNED_BEFORE_SITE: dict[str, int] = {}


@pytest.fixture(scope="session")
def lab_inventory() -> Path:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: run scripts/setup as root to enable the lab tests")
    techops("lab", "up", "--name", LAB, check=True)
    SCANNED_BEFORE_SITE["app1"] = lynis_index(f"{LAB}-app1")
    yield REPO / "inventories" / "lab" / f"hosts-{LAB}.yml"
    techops("lab", "down", "--name", LAB, check=True)


NODE_VENV = "/opt/techops-node"
WHEELS = ("ansible-core==2.19.14", "ansible-runner==2.4.3")


def sh(*argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, f"{argv}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}"
    return proc


def download_wheels(*specs: str) -> Path:
    """Wheels for a lab host, fetched here: lab hosts need no access to the package index."""
    wheels = REPO / ".techops" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    sh(
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--only-binary=:all:",
        "-d",
        str(wheels),
        *specs,
    )
    return wheels


@pytest.fixture(scope="session")
def execution_node(lab_inventory, tmp_path_factory) -> dict:
    """backup1 of the test lab, made an execution node: ansible-runner in a virtualenv,
    installed from wheels the controller downloads (the node needs no internet)."""
    container = f"{LAB}-backup1"
    wheels = download_wheels(*WHEELS)
    sh(
        "podman",
        "exec",
        container,
        "sh",
        "-c",
        "command -v python3 >/dev/null && python3 -c 'import ensurepip' 2>/dev/null || "
        "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "python3-venv >/dev/null)",
    )
    sh("podman", "cp", str(wheels), f"{container}:/var/tmp/techops-wheels")
    sh(
        "podman",
        "exec",
        container,
        "sh",
        "-c",
        f"test -x {NODE_VENV}/bin/ansible-runner || (python3 -m venv {NODE_VENV} && "
        f"{NODE_VENV}/bin/pip install -q --no-index --find-links /var/tmp/techops-wheels "
        + " ".join(WHEELS)
        + ")",
    )
    inventory = yaml.safe_load(lab_inventory.read_text())
    common = inventory["all"]["vars"]
    address = inventory["all"]["children"]["lab"]["children"]["backup_server"]["hosts"]["backup1"][
        "ansible_host"
    ]
    nodes = tmp_path_factory.mktemp("nodes") / "nodes.yml"
    nodes.write_text(
        yaml.safe_dump(
            {
                "nodes": [
                    {
                        "name": "lab-node",
                        "ssh": f"ansible@{address}",
                        "ssh_options": [
                            "-i",
                            common["ansible_ssh_private_key_file"],
                            *common["ansible_ssh_common_args"].split(),
                        ],
                        "ansible_runner": f"{NODE_VENV}/bin/ansible-runner",
                    },
                    {
                        "name": "mesh",
                        "receptor": {
                            "socket": "/run/receptor/receptor.sock",
                            "node": "exec-1",
                            "worktype": "ansible-runner",
                        },
                    },
                ]
            }
        )
    )
    return {"TECHOPS_NODES": str(nodes)}


def console_errors(html: Path) -> list[str]:
    """Console messages and failed loads Chromium reports while rendering a page."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: scripts/test installs it")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                html.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert "</html>" in proc.stdout, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
