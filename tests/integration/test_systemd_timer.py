"""A job fired by a rendered systemd timer, in a lab container that runs systemd, leaves
its decision and its run in that machine's ledger. Its inventory is vaulted: the unit
hands the password over as a systemd credential, and it is nowhere in the unit, the
ledger or the run's artifacts."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from tests.helpers import REPO, container_address, techops

from .conftest import LAB, NODE_VENV, download_wheels, sh

CONTAINER = f"{LAB}-backup1"
ROOT = "/opt/techops"
# What `techops` needs beyond ansible-core and ansible-runner (already on the node).
RUNTIME = ("SQLAlchemy==2.0.58", "croniter==7.0.0", "python-dateutil==2.9.0.post0")
# The collections of PyPI's `ansible` package that patching, backups and drills use.
COLLECTIONS = ("ansible/posix", "community/crypto")
TECHOPS = f"TECHOPS_ROOT={ROOT} {NODE_VENV}/bin/techops"


def in_container(command: str) -> subprocess.CompletedProcess[str]:
    return sh("podman", "exec", CONTAINER, "sh", "-c", command)


@pytest.fixture(scope="module")
def deployed(execution_node, lab_inventory) -> str:
    """techops deployed on backup1 as on a controller: the package in the node's
    virtualenv, the repository's content under /opt/techops, and the collections from
    PyPI's `ansible` package that the roles use. The lab's hosts then admit backup1 as a
    controller: its address joins the automation key's from= and sshd's sources."""
    address = container_address(CONTAINER)
    admitted = techops(
        "run", "base", "-i", str(lab_inventory),
        "-e", json.dumps({"techops_lab_execution_nodes": [address]}),
    )  # fmt: skip
    assert admitted.returncode == 0, admitted.stdout[-2000:] + admitted.stderr[-2000:]
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
    for part in (
        "ansible.cfg",
        "playbooks",
        "roles",
        "collections",
        "plugins",
        "tests/fixtures/playbooks",
    ):
        sh("podman", "cp", str(REPO / part), f"{CONTAINER}:{ROOT}/{part}")
    site = Path(sysconfig.get_paths()["purelib"]) / "ansible_collections"
    node_site = in_container(
        f"{NODE_VENV}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'"
    ).stdout.strip()
    for collection in COLLECTIONS:
        namespace = collection.split("/")[0]
        in_container(f"mkdir -p {node_site}/ansible_collections/{namespace}")
        sh(
            "podman",
            "cp",
            str(site / collection),
            f"{CONTAINER}:{node_site}/ansible_collections/{collection}",
        )
    return ROOT


def test_a_rendered_timer_fires_the_job_through_the_gate(deployed, tmp_path):
    password = f"CANARY-unitpw-{secrets.token_hex(4)}"
    note = f"CANARY-unitnote-{secrets.token_hex(4)}"
    inventory = tmp_path / "vaulted"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    probe:\n")
    vaulted = yaml.safe_dump({"ansible_connection": "local", "probe_note": note})
    (inventory / "group_vars" / "all" / "vault.yml").write_bytes(
        VaultLib([("lab", VaultSecret(password.encode()))]).encrypt(vaulted)
    )
    in_container(f"mkdir -p {ROOT}/inventories /etc/techops/vault")
    sh("podman", "cp", str(inventory), f"{CONTAINER}:{ROOT}/inventories/vaulted")
    in_container(
        f"umask 077 && printf %s {password} > /etc/techops/vault/lab && "
        "chmod 600 /etc/techops/vault/lab"
    )
    schedules = {
        "timezone": "UTC",
        "windows": [{"name": "always", "cron": "* * * * *", "duration": "2h"}],
        "jobs": [
            {
                "name": "probe",
                "playbook": "tests/fixtures/playbooks/node_probe.yml",
                "inventory": "inventories/vaulted/hosts.yml",
                "cron": "* * * * *",
                "window": "always",
                "vault_ids": ["lab"],
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
    unit = in_container("cat /etc/systemd/system/techops-job-probe.service").stdout
    assert "LoadCredential=techops-vault-lab:/etc/techops/vault/lab" in unit
    assert password not in unit
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
        # Nothing of the vault stays behind: not in the ledger, the artifacts, the units.
        leaked = subprocess.run(
            [
                "podman",
                "exec",
                CONTAINER,
                "grep",
                "-rlF",
                "-e",
                password,
                "-e",
                note,
                f"{ROOT}/.techops",
                "/etc/systemd/system",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert leaked.stdout == "", leaked.stdout
    finally:
        subprocess.run(
            ["podman", "exec", CONTAINER, "systemctl", "stop", "techops-job-probe.timer"],
            check=False,
            capture_output=True,
        )


def _runs_in_container() -> list[dict]:
    listed = subprocess.run(
        ["podman", "exec", CONTAINER, "sh", "-c", f"cd {ROOT} && {TECHOPS} runs --json"],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(listed.stdout) if listed.returncode == 0 and listed.stdout else []


def test_rendered_timers_fire_patching_and_the_drill_on_the_lab(deployed, lab_inventory):
    """The shipped patch-weekly and drill-monthly jobs, as timers on a controller that is a
    lab container: each fires its playbook through the gate over SSH to the lab's hosts, and
    the runs, their evidence and the compliance report are in that controller's ledger. The
    lab holds an archive of app1 by now (the site tests made one)."""
    # The lab's SSH key and known hosts, where this controller reads them.
    lab_dir = REPO / ".techops" / "lab" / LAB
    in_container(f"mkdir -p {ROOT}/lab {ROOT}/inventories/lab")
    for name in ("id_ed25519", "known_hosts"):
        sh("podman", "cp", str(lab_dir / name), f"{CONTAINER}:{ROOT}/lab/{name}")
    in_container(f"chmod 600 {ROOT}/lab/id_ed25519")
    inventory = lab_inventory.read_text().replace(str(lab_dir), f"{ROOT}/lab")
    in_container(f"cat > {ROOT}/inventories/lab/hosts.yml <<'EOF'\n{inventory}\nEOF")
    sh(
        "podman",
        "cp",
        str(REPO / "inventories/lab/group_vars"),
        f"{CONTAINER}:{ROOT}/inventories/lab/group_vars",
    )
    shipped = yaml.safe_load((REPO / "schedules.yml").read_text())
    jobs = {job["name"]: job for job in shipped["jobs"]}
    schedules = {
        "timezone": "UTC",
        "windows": [{"name": "always", "groups": ["all"], "cron": "* * * * *", "duration": "2h"}],
        "compliance": shipped["compliance"],
        "jobs": [
            {
                "name": name,
                "playbook": jobs[name]["playbook"],
                "inventory": "inventories/lab/hosts.yml",
                "limit": "app1" if name == "patch-weekly" else jobs[name]["limit"],
                "cron": "* * * * *",
                "window": "always",
                "misfire_grace": "10m",
                "max_runtime": "30m",
            }
            for name in ("patch-weekly", "drill-monthly")
        ],
    }
    in_container(
        f"cat > {ROOT}/schedules.yml <<'EOF'\n{yaml.safe_dump(schedules)}\nEOF\n"
        f"cd {ROOT} && {TECHOPS} schedule install --systemd --output /etc/systemd/system"
    )
    timers = "techops-job-patch-weekly.timer techops-job-drill-monthly.timer"
    in_container(f"systemctl daemon-reload && systemctl start {timers}")
    wanted = {"schedule:patch-weekly", "schedule:drill-monthly"}
    try:
        deadline = time.monotonic() + 600
        done: dict[str, dict] = {}
        while time.monotonic() < deadline and set(done) != wanted:
            done = {
                r["who"]: r
                for r in _runs_in_container()
                if r["who"] in wanted and r["status"] != "running"
            }
            time.sleep(5)
        assert set(done) == wanted, (
            f"only {sorted(done)} finished within 600 s: "
            + in_container(
                "journalctl -u techops-job-patch-weekly.service "
                "-u techops-job-drill-monthly.service --no-pager | tail -30"
            ).stdout
        )
    finally:
        subprocess.run(
            ["podman", "exec", CONTAINER, "sh", "-c", f"systemctl stop {timers}"],
            check=False,
            capture_output=True,
        )
    patch, drill = done["schedule:patch-weekly"], done["schedule:drill-monthly"]
    assert patch["status"] == "successful", patch
    assert drill["status"] == "successful", drill
    assert patch["end"]["evidence"]["app1"]["patch"]["status"] == "ok"
    drilled = drill["end"]["evidence"]["standby1"]["drill"]
    assert drilled["passed"] is True and drilled["rto_s"] is not None, drilled
    report = json.loads(
        in_container(
            f"cd {ROOT} && {TECHOPS} report compliance -i inventories/lab/hosts.yml --format json"
        ).stdout
    )
    app1 = next(h for h in report["hosts"] if h["host"] == "app1")
    assert app1["patch_status"] == "ok" and app1["drill_status"] == "ok", app1
