"""A job fired by a rendered systemd timer, in a lab container that runs systemd, leaves
its decision and its run in that machine's ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import yaml

from tests.helpers import REPO

from .conftest import LAB, NODE_VENV, download_wheels, sh

CONTAINER = f"{LAB}-backup1"
ROOT = "/opt/techops"
# What `techops` needs beyond ansible-core and ansible-runner (already on the node).
RUNTIME = ("SQLAlchemy==2.0.58", "croniter==7.0.0", "python-dateutil==2.9.0.post0")


def in_container(command: str) -> subprocess.CompletedProcess[str]:
    return sh("podman", "exec", CONTAINER, "sh", "-c", command)


def test_a_rendered_timer_fires_the_job_through_the_gate(execution_node, tmp_path):
    wheels = download_wheels(*RUNTIME)
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO))
    sh("podman", "cp", str(wheels), f"{CONTAINER}:/var/tmp/techops-wheels-2")
    in_container(
        f"{NODE_VENV}/bin/pip install -q --no-index --find-links "
        f"/var/tmp/techops-wheels-2 {' '.join(RUNTIME)} && {NODE_VENV}/bin/pip "
        "install -q --no-index --no-deps --find-links /var/tmp/techops-wheels-2 techops"
    )
    # The repository's content, as a deployment would have it.
    in_container(f"rm -rf {ROOT} && mkdir -p {ROOT}/tests/fixtures")
    for part in ("ansible.cfg", "playbooks", "roles", "plugins", "tests/fixtures/playbooks"):
        sh("podman", "cp", str(REPO / part), f"{CONTAINER}:{ROOT}/{part}")
    schedules = {
        "timezone": "UTC",
        "windows": [{"name": "always", "cron": "* * * * *", "duration": "2h"}],
        "jobs": [
            {
                "name": "probe",
                "playbook": "tests/fixtures/playbooks/node_probe.yml",
                "inventory": "probe,",
                "cron": "* * * * *",
                "window": "always",
            }
        ],
    }
    local = tmp_path / "schedules.yml"
    local.write_text(yaml.safe_dump(schedules))
    sh("podman", "cp", str(local), f"{CONTAINER}:{ROOT}/schedules.yml")
    installed = in_container(
        f"cd {ROOT} && TECHOPS_ROOT={ROOT} {NODE_VENV}/bin/techops "
        "schedule install --systemd --output /etc/systemd/system"
    )
    assert "techops-job-probe.timer" in installed.stdout
    in_container("systemctl daemon-reload && systemctl start techops-job-probe.timer")
    try:
        deadline = time.monotonic() + 150
        runs: list = []
        while time.monotonic() < deadline:
            listed = subprocess.run(
                [
                    "podman",
                    "exec",
                    CONTAINER,
                    "sh",
                    "-c",
                    f"cd {ROOT} && TECHOPS_ROOT={ROOT} {NODE_VENV}/bin/techops runs --json",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            runs = json.loads(listed.stdout) if listed.returncode == 0 and listed.stdout else []
            if runs and runs[0]["status"] != "running":
                break
            time.sleep(5)
        assert runs, (
            "the timer did not fire within 150 s: "
            + in_container("journalctl -u techops-job-probe.service --no-pager | tail -20").stdout
        )
        assert runs[0]["who"] == "schedule:probe"
        assert runs[0]["status"] == "successful", runs[0]
        assert runs[0]["end"]["evidence"]["probe"]["node"]["ran_on"] == "backup1"
        ledger = in_container(
            f"cd {ROOT} && TECHOPS_ROOT={ROOT} {NODE_VENV}/bin/python -c "
            '"from runner.scheduling.jobs import decisions; '
            "from runner.ledger.store import Ledger, ledger_url; import json; "
            'print(json.dumps(decisions(Ledger.open(ledger_url()))))"'
        )
        made = json.loads(ledger.stdout)
        assert made[0]["action"] == "fire" and made[0]["run_id"] == runs[0]["run_id"]
    finally:
        subprocess.run(
            ["podman", "exec", CONTAINER, "systemctl", "stop", "techops-job-probe.timer"],
            check=False,
            capture_output=True,
        )
