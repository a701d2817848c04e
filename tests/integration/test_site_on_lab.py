"""The main job end to end: the lab over SSH, playbooks/site.yml through `techops run`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.lab.hosts import LAB_HOSTS
from runner.ledger.store import Ledger
from tests.helpers import REPO, container_address, techops

from .conftest import LAB, SCANNED_BEFORE_SITE, ansible_output, lynis_index

# The least rise of lynis's index that site.yml must bring (measured: see the closing notes;
# one point of slack for lynis's own variation between runs).
SCANNER_MIN_GAIN = 4


def _outcome(proc) -> dict:
    start = proc.stdout.index("{")
    return json.loads(proc.stdout[start:])


def _compliance(inventory: Path, ledger: str) -> dict:
    """The compliance report of the lab's hosts, as JSON."""
    proc = techops(
        "report",
        "compliance",
        "-i",
        str(inventory),
        "--format",
        "json",
        "--ledger",
        ledger,
        check=True,
    )
    return json.loads(proc.stdout)


def test_lab_status_shows_every_host_reachable(lab_inventory):
    proc = techops("lab", "status", "--name", LAB)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = proc.stdout.splitlines()[1:]
    assert len(rows) == len(LAB_HOSTS)
    assert all(row.split()[-1] == "ok" for row in rows)


def test_inventory_names_the_groups_the_roles_use(lab_inventory):
    inventory = yaml.safe_load(lab_inventory.read_text())
    groups = inventory["all"]["children"]["lab"]["children"]
    assert {"bastion", "app", "backup_server", "dr_standby", "monitoring"} <= set(groups)


def test_site_converges_then_changes_nothing(lab_inventory):
    first = techops("run", "site", "-i", str(lab_inventory), "--json")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert _outcome(first)["status"] == "successful"
    second = techops("run", "site", "-i", str(lab_inventory), "--json")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    stats = _outcome(second)["stats"]
    assert len(stats) == len(LAB_HOSTS)
    changed = {host: s.get("changed", 0) for host, s in stats.items() if s.get("changed", 0)}
    assert changed == {}, f"second run of site.yml changed something: {changed}"
    # Live progress reached the terminal stream, with hosts done of total.
    assert f"{len(LAB_HOSTS)}/{len(LAB_HOSTS)} hosts" in second.stderr
    # The repository's callback (ansible.cfg) is found although ansible-runner sets its own
    # callback directory: Ansible warns when an enabled callback cannot be loaded.
    assert "Skipping callback plugin" not in ansible_output(_outcome(second)["run_id"])
    # site.yml prints no secret, so nothing on the terminal may be redacted: a redaction
    # there would be an ordinary word or host name hidden by mistake (as once happened to
    # "backup", an account name in the getent_passwd fact).
    for run in (first, second):
        assert "**redacted**" not in run.stderr, [
            line for line in run.stderr.splitlines() if "**redacted**" in line
        ][:5]


def test_an_independent_scanner_rates_a_host_higher_after_the_site(lab_inventory):
    """lynis, run on app1 as `techops lab up` made it and again after site.yml converged
    (the test above): the baseline raises its hardening index. In a container lynis still
    misses what cannot apply there (live kernel settings, auditd), so the rise is smaller
    than on a real host."""
    before = SCANNED_BEFORE_SITE["app1"]
    after = lynis_index(f"{LAB}-app1")
    print(f"\nlynis hardening index of app1: {before} before site.yml, {after} after")
    assert after >= before + SCANNER_MIN_GAIN, (before, after)


def test_ansible_navigator_runs_the_site_on_the_lab(lab_inventory, tmp_path):
    """ansible-navigator with the repository's settings (ansible-navigator.yml): stdout
    mode, no execution environment, and no playbook artifact (it would keep every event
    unredacted)."""
    before = set(REPO.rglob("*-artifact-*.json"))
    bindir = str(Path(sys.executable).parent)
    proc = subprocess.run(
        [f"{bindir}/ansible-navigator", "run", "playbooks/site.yml", "-i", str(lab_inventory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
        env={
            **os.environ,
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "XDG_CACHE_HOME": str(tmp_path),
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recap = dict(re.findall(r"^(\S+)\s+: (ok=.*)$", proc.stdout, re.M))
    assert len(recap) == len(LAB_HOSTS), proc.stdout[-2000:]
    for host, counters in recap.items():
        assert "unreachable=0" in counters and "failed=0" in counters, (host, counters)
    assert set(REPO.rglob("*-artifact-*.json")) == before


def test_check_mode_after_converge_reports_no_changes(lab_inventory):
    proc = techops("run", "site", "-i", str(lab_inventory), "--check", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stats = _outcome(proc)["stats"]
    assert all(s.get("changed", 0) == 0 for s in stats.values())


def test_a_failing_host_gives_ansible_playbooks_exit_code(lab_inventory):
    proc = techops("run", "tests/fixtures/playbooks/mixed_outcomes.yml", "-i", str(lab_inventory))
    assert proc.returncode == 2
    assert "FAILED app2: planned failure on app2" in proc.stderr


def test_a_role_variable_of_the_wrong_type_stops_before_any_change(lab_inventory):
    proc = techops(
        "run",
        "base",
        "-i",
        str(lab_inventory),
        "--json",
        "-e",
        '{"base_firewall_allowed_tcp_ports": "ssh"}',
    )
    assert proc.returncode == 2
    assert "base_firewall_allowed_tcp_ports" in proc.stderr
    stats = _outcome(proc)["stats"]
    assert all(s.get("changed", 0) == 0 for s in stats.values())
    assert all(s.get("failures", 0) == 1 for s in stats.values())


def test_the_fast_strategy_runs_the_same_site_and_changes_nothing(lab_inventory):
    proc = techops("run", "site", "-i", str(lab_inventory), "--fast", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stats = _outcome(proc)["stats"]
    assert len(stats) == len(LAB_HOSTS)
    assert all(s.get("changed", 0) == 0 for s in stats.values()), stats


def test_a_backup_then_a_drill_feed_the_compliance_and_access_reports(lab_inventory, tmp_path):
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    site = techops("run", "site", "-i", str(lab_inventory), "--ledger", ledger, "--json")
    assert site.returncode == 0, site.stderr[-3000:]
    # The site run initialises the repositories and makes no archive: the report must say
    # so, not fall back to the run's own time.
    runs = json.loads(techops("runs", "--json", "--ledger", ledger, check=True).stdout)
    site_run = next(r for r in runs if r["run_id"] == _outcome(site)["run_id"])
    before = site_run["end"]["evidence"]["app1"]["backup"]
    assert before["archive_time"] is None and before["archives"] == 0, (
        f"the fresh lab already holds an archive ({before}): the no-archive case is untested"
    )
    empty = _compliance(lab_inventory, ledger)
    app1 = next(h for h in empty["hosts"] if h["host"] == "app1")
    assert app1["backup_status"] == "never" and app1["last_backup"] is None, app1
    assert any("no backup archive" in flag for flag in app1["flags"]), app1["flags"]
    backup = techops(
        "run",
        "backup",
        "-i",
        str(lab_inventory),
        "-e",
        "backup_run_now=true",
        "--ledger",
        ledger,
        "--json",
    )
    assert backup.returncode == 0, backup.stderr[-3000:]
    runs = json.loads(techops("runs", "--json", "--ledger", ledger, check=True).stdout)
    backup_run = next(r for r in runs if r["run_id"] == _outcome(backup)["run_id"])
    archived = backup_run["end"]["evidence"]["app1"]["backup"]["archive_time"]
    assert archived, "the backup run made an archive: its evidence names the archive's time"
    drill = techops("run", "dr_drill", "-i", str(lab_inventory), "--ledger", ledger, "--json")
    assert drill.returncode == 0, drill.stderr[-3000:]
    compliance = _compliance(lab_inventory, ledger)
    hosts = {h["host"]: h for h in compliance["hosts"]}
    # The archive's own time, not the run's: a report may only state what the evidence shows.
    assert hosts["app1"]["last_backup"] == archived
    assert hosts["app1"]["backup_status"] == "ok"
    # The drill is filed under the system drilled (app1), naming the standby it ran on.
    assert hosts["app1"]["drill_standby"] == "standby1"
    assert hosts["app1"]["drill_passed"] is True
    assert hosts["app1"]["drill_rto_s"] is not None
    assert hosts["app1"]["drill_status"] == "ok"
    assert hosts["standby1"]["drill_run"] is None
    access = json.loads(techops("report", "access", "--format", "json", "--ledger", ledger).stdout)
    exemption = access["automation_exemptions"]["bastion1"]
    assert exemption["user"] == "ansible"
    assert exemption["addresses"]


def test_retention_runs_from_the_controller_and_nowhere_else(lab_inventory, tmp_path):
    """The compromised-server and compromised-client cases on the lab: backup1 holds no
    passphrase and cannot list an archive; the controller's maintenance key for app1's
    repository, copied to app1, is refused there; from the controller the maintenance
    prunes and compacts, recorded with what it pruned."""
    server = f"{LAB}-backup1"
    found = subprocess.run(
        ["podman", "exec", server, "sh", "-c",
         "grep -rIl -e lab-only-borg-passphrase /etc /srv /root /home /var/lib; "
         "cd /srv/borg && runuser -u borg -- env BORG_PASSPHRASE= "
         "BORG_RELOCATED_REPO_ACCESS_IS_OK=no borg list /srv/borg/app1/repo"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert found.stdout.strip() == "", found.stdout  # no file holds it, no archive is listed
    assert found.returncode != 0 and "passphrase" in found.stderr.lower(), found.stderr

    key = Path(os.environ["HOME"]) / ".ssh" / "techops-borg" / "backup1_app1"
    assert key.exists(), f"site.yml made no maintenance key at {key}"
    backup1 = container_address(server)
    attempt = (
        "chmod 600 /root/maintenance-key; "
        "ssh -i /root/maintenance-key -o IdentitiesOnly=yes -o BatchMode=yes "
        "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 "
        f"borg@{backup1} borg serve"
    )
    try:
        subprocess.run(["podman", "cp", str(key), f"{LAB}-app1:/root/maintenance-key"], check=True)
        stolen = subprocess.run(
            ["podman", "exec", f"{LAB}-app1", "sh", "-c", attempt],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert stolen.returncode == 255 and "Permission denied" in stolen.stderr, stolen.stderr
    finally:
        subprocess.run(
            ["podman", "exec", f"{LAB}-app1", "rm", "-f", "/root/maintenance-key"], check=False
        )

    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    backup = techops(
        "run", "backup", "-i", str(lab_inventory), "-e", "backup_run_now=true",
        "--tags", "backup_run,backup_evidence", "--ledger", ledger, "--json",
    )  # fmt: skip
    assert backup.returncode == 0, backup.stderr[-3000:]
    maintain = techops(
        "run", "backup_maintain", "-i", str(lab_inventory), "--ledger", ledger, "--json"
    )
    assert maintain.returncode == 0, maintain.stdout[-3000:] + maintain.stderr[-3000:]
    runs = json.loads(techops("runs", "--json", "--ledger", ledger, check=True).stdout)
    run = next(r for r in runs if r["run_id"] == _outcome(maintain)["run_id"])
    evidence = run["end"]["evidence"]["app1"]["backup_maintain"]
    assert evidence["refused"] is False and evidence["vanished"] == [], evidence
    assert evidence["compacted"] is True
    # Every archive the backup run listed was there; none but the retention's went.
    listed = next(r for r in runs if r["run_id"] == _outcome(backup)["run_id"])
    names = [a["name"] for a in listed["end"]["evidence"]["app1"]["backup"]["listing"]]
    assert [a["name"] for a in evidence["before"]] == names, evidence
    kept = [a["name"] for a in evidence["after"]]
    assert sorted(kept + evidence["pruned"]) == sorted(names)


def test_the_scheduler_fires_patching_and_the_drill_through_the_gate(lab_inventory, tmp_path):
    """Scheduled patching and DR drills end to end, as the shipped jobs (patch-weekly,
    drill-monthly) on the lab: the scheduler fires both through the gate, each run is
    recorded as its job's, with its evidence, and the compliance report reads them. The
    lab holds an archive of app1 by now (the backup test above made one)."""
    shipped = yaml.safe_load((REPO / "schedules.yml").read_text())
    jobs = {job["name"]: job for job in shipped["jobs"]}
    like = {
        name: {
            "name": f"{name}-lab",
            "playbook": jobs[name]["playbook"],
            "inventory": str(lab_inventory),
            "limit": "app1" if name == "patch-weekly" else jobs[name]["limit"],
            "cron": "* * * * *",
            "window": "always",
            "misfire_grace": "10m",
            "max_runtime": "30m",
        }
        for name in ("patch-weekly", "drill-monthly")
    }
    schedules = tmp_path / "schedules.yml"
    schedules.write_text(
        yaml.safe_dump(
            {
                "timezone": "UTC",
                "windows": [
                    {"name": "always", "groups": ["all"], "cron": "* * * * *", "duration": "2h"}
                ],
                "compliance": shipped["compliance"],
                "jobs": list(like.values()),
            }
        )
    )
    env = {
        "TECHOPS_SCHEDULES": str(schedules),
        "TECHOPS_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
    }
    fired = techops("scheduler", "--once", env=env)
    assert fired.returncode == 0, fired.stdout[-3000:] + fired.stderr[-3000:]
    assert "firing patch-weekly-lab" in fired.stdout and "firing drill-monthly-lab" in fired.stdout
    made = [e.body for e in Ledger.open(env["TECHOPS_LEDGER"]).entries(kinds=["schedule.decision"])]
    # Each fired job's own process records its decision: when one is missing, what the
    # scheduler and its jobs printed says why.
    assert sorted((d["job"], d["action"]) for d in made) == [
        ("drill-monthly-lab", "fire"),
        ("patch-weekly-lab", "fire"),
    ], (made, fired.stdout[-4000:], fired.stderr[-4000:])
    runs = {r["who"]: r for r in json.loads(techops("runs", "--json", env=env, check=True).stdout)}
    patch, drill = runs["schedule:patch-weekly-lab"], runs["schedule:drill-monthly-lab"]
    assert patch["status"] == "successful", patch
    assert drill["status"] == "successful", drill
    assert {d["run_id"] for d in made} == {patch["run_id"], drill["run_id"]}
    # The evidence each role published: app1 patched inside the window (the play's own
    # gate read the same schedules file as the scheduler), the drill passed with its RTO.
    patched = patch["end"]["evidence"]["app1"]["patch"]
    assert patched["status"] == "ok", patched
    assert patched["security_pending_after"] == 0, patched
    drilled = drill["end"]["evidence"]["standby1"]["drill"]
    assert drilled["passed"] is True and drilled["rto_s"] is not None, drilled
    report = json.loads(
        techops(
            "report", "compliance", "-i", str(lab_inventory), "--format", "json", env=env,
            check=True,
        ).stdout
    )  # fmt: skip
    app1 = next(h for h in report["hosts"] if h["host"] == "app1")
    assert app1["last_patch"] is not None and app1["patch_status"] == "ok", app1
    assert app1["drill_status"] == "ok" and app1["drill_passed"] is True, app1


@pytest.mark.parametrize(("group", "host"), [("bastion", "bastion1"), ("app", "app1")])
def test_ssh_audit_finds_no_failure_and_no_warning(lab_inventory, group, host):
    inventory = yaml.safe_load(lab_inventory.read_text())
    address = inventory["all"]["children"]["lab"]["children"][group]["hosts"][host]["ansible_host"]
    # The pinned, current ssh-audit beside this interpreter (pyproject.toml), not an older
    # one on PATH. The rate test probes denial of service, not the configuration.
    ssh_audit = str(Path(sys.executable).parent / "ssh-audit")
    proc = subprocess.run(
        [ssh_audit, "-n", "--skip-rate-test", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "(kex)" in proc.stdout, proc.stdout + proc.stderr  # it did audit the server
    findings = [line for line in proc.stdout.splitlines() if "[fail]" in line or "[warn]" in line]
    assert findings == [], "\n".join(findings)


def _keys() -> tuple[str, str]:
    """A WireGuard public key and an OpenSSH public key, made here for a test user."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    wireguard = base64.b64encode(X25519PrivateKey.generate().public_key().public_bytes(*raw))
    ssh = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return wireguard.decode(), ssh.decode() + " test-user"


def test_the_access_review_lists_granted_and_revoked_users(lab_inventory, tmp_path):
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    users = []
    for name in ("alice", "bob"):
        wireguard, ssh = _keys()
        users.append({"name": name, "public_key": wireguard, "ssh_keys": [ssh], "state": "present"})
    grant = techops(
        "run",
        "access",
        "-i",
        str(lab_inventory),
        "--ledger",
        ledger,
        "-e",
        json.dumps({"access_users": users}),
    )
    assert grant.returncode == 0, grant.stderr[-3000:]
    users[1]["state"] = "absent"
    revoke = techops(
        "run",
        "access",
        "-i",
        str(lab_inventory),
        "--ledger",
        ledger,
        "--json",
        "-e",
        json.dumps({"access_users": users}),
    )
    assert revoke.returncode == 0, revoke.stderr[-3000:]
    revoking_run = _outcome(revoke)["run_id"]
    review = json.loads(techops("report", "access", "--format", "json", "--ledger", ledger).stdout)
    rows = {(r["user"], r["host"]): r for r in review["users"]}
    alice, bob = rows[("alice", "bastion1")], rows[("bob", "bastion1")]
    assert alice["state"] == "present" and alice["totp_enrolled"] is True
    assert alice["vpn_peer"] == "present" and alice["vpn_address"]
    assert bob["state"] == "absent" and bob["revoked_by_run"] == revoking_run
    assert bob["totp_enrolled"] is False


def test_the_automation_key_works_from_the_controller_only(lab_inventory):
    """The stolen-key case: the lab key, copied to the bastion (which app1's firewall
    admits, as people jump through it), is refused by sshd's from= on app1; from app2 the
    firewall does not even answer; from the controller it logs in."""
    app1 = container_address(f"{LAB}-app1")
    home = techops("lab", "status", "--name", LAB)
    assert home.returncode == 0 and re.search(r"^app1 .* ok\s*$", home.stdout, re.M), home.stdout
    key = REPO / ".techops" / "lab" / LAB / "id_ed25519"
    bastion, app2 = f"{LAB}-bastion1", f"{LAB}-app2"
    attempt = (
        "ssh -i /root/stolen-key -o BatchMode=yes -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 ansible@{app1} true"
    )
    try:
        for container in (bastion, app2):
            subprocess.run(["podman", "cp", str(key), f"{container}:/root/stolen-key"], check=True)
            subprocess.run(
                ["podman", "exec", container, "chmod", "600", "/root/stolen-key"], check=True
            )
        stolen = subprocess.run(
            ["podman", "exec", bastion, "sh", "-c", attempt],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert stolen.returncode == 255 and "Permission denied" in stolen.stderr, stolen.stderr
        # sshd saw the right key from the wrong place (LogLevel VERBOSE says so).
        journal = subprocess.run(
            ["podman", "exec", f"{LAB}-app1", "journalctl", "-u", "ssh", "-n", "200", "--no-pager"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "not from a permitted host" in journal, journal[-2000:]
        blocked = subprocess.run(
            ["podman", "exec", app2, "sh", "-c", attempt],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert blocked.returncode == 255 and "timed out" in blocked.stderr, blocked.stderr
    finally:
        for container in (bastion, app2):
            subprocess.run(
                ["podman", "exec", container, "rm", "-f", "/root/stolen-key"], check=False
            )


# What a run of each playbook would change on app1 first: read before and after a refusal.
WATCHED = {
    "base": ["/home/ansible/.ssh/authorized_keys", "/etc/nftables.conf"],
    "hardening": ["/etc/security/faillock.conf", "/etc/login.defs"],
}


@pytest.mark.parametrize(
    ("playbook", "extra", "named"),
    [
        ("base", {"base_automation_key_from": ["192.0.2.7"]}, "base_automation_key_from"),
        ("base", {"base_sshd_allowed_sources": ["192.0.2.0/24"]}, "base_sshd_allowed_sources"),
        (
            "base",
            {
                "base_admin_users": [
                    {"name": "ansible", "ssh_keys": ["{{ techops_lab_automation_key }}"],
                     "sudo": "nopasswd"},
                    {"name": "someone", "ssh_keys": ["{{ techops_lab_automation_key }}"],
                     "sudo": "nopasswd"},
                ]
            },
            "give someone sudo: password",
        ),
        ("hardening", {"hardening_faillock_deny": 1}, "hardening_faillock_deny"),
        ("hardening", {"hardening_faillock_unlock_time": 0}, "hardening_faillock_unlock_time"),
    ],
)  # fmt: skip
def test_data_that_would_lock_the_automation_out_stops_before_any_change(
    lab_inventory, playbook, extra, named
):
    def watched() -> str:
        return subprocess.run(
            ["podman", "exec", f"{LAB}-app1", "cat", *WATCHED[playbook]],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    before = watched()
    proc = techops(
        "run", playbook, "-i", str(lab_inventory), "--limit", "app1", "--json",
        "-e", json.dumps(extra),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert named in proc.stderr, proc.stderr[-3000:]
    stats = _outcome(proc)["stats"]
    assert stats["app1"].get("changed", 0) == 0 and stats["app1"].get("failures", 0) == 1
    assert watched() == before
