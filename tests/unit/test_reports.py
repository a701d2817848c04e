"""Reports read only the ledger: compliance, access review and run reports."""

from __future__ import annotations

import csv
import io
import json

import pytest

from runner.errors import UserError
from runner.reports import access_review, compliance, compliance_report, run_report


def add_run(
    ledger, run_id, hosts, evidence=None, status="successful", playbook="site.yml", check=False
):
    ledger.append(
        "run.started",
        run_id,
        {
            "run_id": run_id,
            "playbook": playbook,
            "who": {"kind": "user", "name": "alice"},
            "inventory": {"source": "inv", "sha256": "0" * 64},
            "git": {"commit": "abc", "dirty": False},
            "versions": {},
            "check": check,
            "controller": {"host": "ctl"},
        },
    )
    ledger.append(
        "run.finished",
        run_id,
        {
            "run_id": run_id,
            "status": status,
            "rc": 0 if status == "successful" else 2,
            "hosts": {h: {"outcome": o, "ok": 1} for h, o in hosts.items()},
            "failed_tasks": [],
            "changed_tasks": [],
            "evidence": evidence or {},
            "events": {"count": 0, "sha256": ""},
        },
    )


def test_compliance_per_host(ledger):
    add_run(
        ledger,
        "r1",
        {"app1": "changed", "app2": "ok"},
        {
            "app1": {"patch": {"security_pending_after": 0}},
            "app2": {"patch": {"security_pending_after": 3}},
        },
        playbook="playbooks/patch.yml",
    )
    add_run(
        ledger,
        "r2",
        {"backup1": "ok", "app1": "ok"},
        {"app1": {"backup": {"archive_time": "2026-11-21T01:00:00+00:00"}}},
    )
    add_run(
        ledger,
        "r3",
        {"standby1": "ok"},
        {"standby1": {"drill": {"rto_s": 412.5, "rpo_s": 3600, "passed": True}}},
    )
    add_run(ledger, "r4", {"app2": "failed"}, status="failed")
    data = compliance(ledger, since="2000")
    hosts = {h["host"]: h for h in data["hosts"]}
    assert hosts["app1"]["last_patch"] is not None
    assert hosts["app1"]["pending_security_updates"] == 0
    assert hosts["app2"]["pending_security_updates"] == 3
    assert hosts["app1"]["last_backup"] == "2026-11-21T01:00:00+00:00"
    assert hosts["standby1"]["drill_rto_s"] == 412.5 and hosts["standby1"]["drill_passed"]
    assert hosts["app2"]["failed_runs"] == ["r4"]
    assert data["ledger"]["verified"]
    rows = list(csv.DictReader(io.StringIO(compliance_report(ledger, "2000", "csv"))))
    assert {r["host"] for r in rows} == {"app1", "app2", "backup1", "standby1"}


def test_a_check_mode_patch_run_is_not_a_patch(ledger):
    add_run(ledger, "r1", {"app1": "ok"}, {"app1": {"patch": {}}}, check=True)
    assert compliance(ledger, "2000")["hosts"][0]["last_patch"] is None


def test_access_review_tracks_revocation_by_run(ledger):
    user = {
        "name": "bob",
        "vpn_peer": "present",
        "vpn_address": "10.8.0.2",
        "last_handshake": 1795000000,
        "totp_enrolled": True,
        "state": "present",
    }
    add_run(
        ledger,
        "r1",
        {"bastion1": "changed"},
        {
            "bastion1": {
                "access": {
                    "users": [user, {**user, "name": "carol", "vpn_address": "10.8.0.3"}],
                    "revoked": [],
                    "automation_exemption": {"user": "ansible", "addresses": ["10.0.0.1"]},
                }
            }
        },
    )
    add_run(
        ledger,
        "r2",
        {"bastion1": "changed"},
        {
            "bastion1": {
                "access": {
                    "users": [{**user, "name": "carol", "vpn_address": "10.8.0.3"}],
                    "revoked": ["bob"],
                }
            }
        },
    )
    review = access_review(ledger)
    rows = {r["user"]: r for r in review["users"]}
    assert rows["bob"]["state"] == "absent"
    assert rows["bob"]["revoked_by_run"] == "r2"
    assert rows["carol"]["state"] == "present" and rows["carol"]["totp_enrolled"]
    assert rows["carol"]["last_handshake"].startswith("2026-")
    assert review["automation_exemptions"]["bastion1"]["addresses"] == ["10.0.0.1"]


def test_run_report_formats(ledger):
    add_run(ledger, "20261122T000000Z-aaaaaa", {"app1": "ok"}, {"app1": {"patch": {"x": 1}}})
    html = run_report(ledger, "20261122T000000Z-a", "html")
    for section in (
        "Summary",
        "Who, what, when and why",
        "Hosts",
        "Changes",
        "Failures",
        "Evidence",
        "Ledger",
        "patch",
    ):
        assert section in html
    assert "http://" not in html and "https://" not in html
    assert json.loads(run_report(ledger, "20261122T000000Z-aaaaaa", "json"))["status"] == (
        "successful"
    )
    assert "# Run 20261122T000000Z-aaaaaa: successful" in run_report(
        ledger, "20261122T000000Z-aaaaaa", "md"
    )


def test_unknown_and_ambiguous_run_ids(ledger):
    add_run(ledger, "20261122T000000Z-aaaaaa", {"a": "ok"})
    add_run(ledger, "20261122T000000Z-aaabbb", {"a": "ok"})
    with pytest.raises(UserError, match="no run 'nope'"):
        run_report(ledger, "nope", "html")
    with pytest.raises(UserError, match="ambiguous"):
        run_report(ledger, "20261122T000000Z-aaa", "html")


def test_report_escapes_what_it_shows(ledger):
    add_run(ledger, "r1", {"<script>alert(1)</script>": "ok"})
    assert "<script>alert(1)" not in run_report(ledger, "r1", "html")


def test_patch_and_drill_evidence_render_as_tables(ledger):
    add_run(
        ledger,
        "r1",
        {"app1": "changed", "standby1": "ok"},
        {
            "app1": {
                "patch": {
                    "status": "ok",
                    "updates_applied": ["apt"],
                    "security_updates_applied": ["apt"],
                    "rebooted": True,
                    "versions_before": {"apt": "2.6.1"},
                    "versions_after": {"apt": "2.6.2"},
                    "security_pending_after": 0,
                }
            },
            "standby1": {
                "drill": {
                    "passed": False,
                    "reason": "RPO 7200 s over target 3600 s",
                    "rto_s": 95,
                    "rpo_s": 7200,
                    "rto_target_s": 900,
                    "rpo_target_s": 3600,
                    "files_verified": 120,
                    "mismatches": [],
                }
            },
        },
    )
    html = run_report(ledger, "r1", "html")
    assert "apt 2.6.1 → 2.6.2" in html
    assert "rebooted" in html
    assert "RPO 7200 s over target 3600 s" in html
    assert "7200 s (3600 s)" in html
