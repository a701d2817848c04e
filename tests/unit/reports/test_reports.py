"""Reports read only the ledger: compliance, access review and run reports."""

from __future__ import annotations

import csv
import io
import json

import pytest

from runner.core.errors import UserError
from runner.reports.access import access_review
from runner.reports.compliance import compliance, compliance_report
from runner.reports.drill import drill, drill_report
from runner.reports.model import load_runs
from runner.reports.run import run_report
from runner.reports.runs import runs_table
from tests.ledgers import add_drill, add_run, forge


def test_compliance_per_host(ledger):
    add_run(
        ledger,
        "r1",
        {"app1": "changed", "app2": "ok"},
        {
            "app1": {"patch": {"status": "ok", "security_pending_after": 0}},
            "app2": {"patch": {"status": "ok", "security_pending_after": 3}},
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
        {
            "standby1": {
                "drill": {
                    "source": "app1",
                    "standby": "standby1",
                    "started": "2026-11-21T03:30:00+00:00",
                    "rto_s": 412.5,
                    "rpo_s": 3600,
                    "rto_target_s": 900,
                    "rpo_target_s": 93600,
                    "passed": True,
                }
            }
        },
    )
    add_run(ledger, "r4", {"app2": "failed"}, status="failed")
    data = compliance(ledger, since="2000")
    hosts = {h["host"]: h for h in data["hosts"]}
    assert hosts["app1"]["last_patch"] is not None
    assert hosts["app1"]["pending_security_updates"] == 0
    assert hosts["app2"]["pending_security_updates"] == 3
    assert hosts["app1"]["last_backup"] == "2026-11-21T01:00:00+00:00"
    # A drill is filed under the system drilled, naming the standby it was restored onto.
    assert hosts["app1"]["drill_rto_s"] == 412.5 and hosts["app1"]["drill_passed"]
    assert hosts["app1"]["drill_standby"] == "standby1"
    assert hosts["app1"]["drill_rto_target_s"] == 900
    assert hosts["app1"]["drill_rpo_target_s"] == 93600
    assert hosts["standby1"]["drill_run"] is None
    assert hosts["app2"]["failed_runs"] == ["r4"]
    assert data["ledger"]["verified"]
    rows = list(csv.DictReader(io.StringIO(compliance_report(ledger, "2000", "csv"))))
    assert {r["host"] for r in rows} == {"app1", "app2", "backup1", "standby1"}
    drilled = next(r for r in rows if r["host"] == "app1")
    assert (drilled["drill_rto_target_s"], drilled["drill_rpo_target_s"]) == ("900", "93600")
    assert "412.5 (900)" in compliance_report(ledger, "2000", "html")


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


def test_a_run_outside_techops_says_so_in_the_list_and_its_report(ledger):
    add_run(ledger, "20261122T000000Z-aaaaaa", {"app1": "ok"})
    add_run(ledger, "20261122T000000Z-bbbbbb", {"app1": "ok"}, unwrapped=True)
    runs = load_runs(ledger)
    assert not runs["20261122T000000Z-aaaaaa"].unwrapped
    assert runs["20261122T000000Z-bbbbbb"].as_dict()["unwrapped"] is True
    table = runs_table(list(runs.values())).splitlines()
    assert table[0].split()[-1] == "VIA"
    assert table[1].endswith("techops") and table[2].endswith("ansible-playbook (unwrapped)")
    html = run_report(ledger, "20261122T000000Z-bbbbbb", "html")
    assert "<strong>plain ansible-playbook, outside techops (unwrapped)</strong>" in html
    assert "<dt>Started with</dt><dd>techops</dd>" in run_report(
        ledger, "20261122T000000Z-aaaaaa", "html"
    )
    assert "| Started with | techops |" in run_report(ledger, "20261122T000000Z-aaaaaa", "md")


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
                    "reboot_s": 41,
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
    assert "rebooted (41 s)" in html
    assert "RPO 7200 s over target 3600 s" in html
    assert "7200 s (3600 s)" in html


def test_drill_report_measures_against_targets_with_the_trend(ledger):
    add_drill(ledger, "20261007T033000Z-aaaaaa", started="2026-10-07T03:30:00+00:00")
    # Text, as an older ansible-core's set_stats hands templated values over.
    add_drill(
        ledger,
        "20261104T033000Z-bbbbbb",
        status="failed",
        started="2026-11-04T03:30:00+00:00",
        rpo_s="100000.0",
        passed="False",
        reason="RPO 100000 s exceeds the target 93600 s",
    )
    add_drill(ledger, "20261105T033000Z-cccccc", check=True)  # check mode: not a drill
    add_drill(ledger, "20261106T000000Z-dddddd", source="app2")  # another system
    add_drill(
        ledger,
        "20261202T033000Z-eeeeee",
        status="failed",
        rto_s=1200.5,
        passed=False,
        reason="1 of 120 files do not match the manifest: /srv/app/x; RTO 1200 s exceeds...",
        files_verified=119,
        mismatches=[{"path": "/srv/app/x", "problem": "sha256"}],
    )
    add_drill(ledger, "20270106T033000Z-ffffff")  # later than the drill reported on

    data = drill(ledger, "20261202T033000Z-e")
    assert data["run_id"] == "20261202T033000Z-eeeeee" and data["passed"] is False
    (one,) = data["drills"]
    assert (one["system"], one["standby"], one["archive"]) == (
        "app1",
        "standby1",
        "app1-2026-11-21T01:00:00",
    )
    assert (one["rto_s"], one["rto_target_s"], one["rto_met"]) == (1200.5, 900, False)
    assert (one["rpo_s"], one["rpo_target_s"], one["rpo_met"]) == (9000.0, 93600, True)
    assert (one["files_verified"], one["files_total"]) == (119, 120)
    assert one["mismatches"] == [{"path": "/srv/app/x", "problem": "sha256"}]
    trend = one["trend"]
    assert [t["run_id"][-6:] for t in trend] == ["aaaaaa", "bbbbbb", "eeeeee"]
    assert [t["passed"] for t in trend] == [True, False, False]
    assert trend[1]["rpo_s"] == 100000.0 and trend[1]["rpo_met"] is False
    assert [t["current"] for t in trend] == [False, False, True]
    assert one["trend_summary"] == {"drills": 3, "passed": 1, "failed": 2, "unknown": 0}
    assert data["ledger"]["verified"]

    html = drill_report(ledger, "20261202T033000Z-e", "html")
    for shown in (
        "1200.5 s",
        "900 s",
        "missed",
        "9000.0 s",
        "93600 s",
        "119 of 120",
        "/srv/app/x",
        "sha256",
        "app1-2026-11-21T01:00:00",
        "20261007T033000Z-aaaaaa",
        "2026-10-07 03:30:00",
        "3 drill(s) recorded up to this one: 1 passed, 2 failed",
        "this drill",
    ):
        assert shown in html, shown
    assert "20261105T033000Z-cccccc" not in html and "20270106T033000Z-ffffff" not in html
    assert "http://" not in html and "https://" not in html and "<link" not in html
    md = drill_report(ledger, "20261202T033000Z-eeeeee", "md")
    assert md.startswith("# DR drill 20261202T033000Z-eeeeee: FAILED")
    assert "| RTO (start to verified service) | 1200.5 s | 900 s | MISSED |" in md
    assert json.loads(drill_report(ledger, "20261202T033000Z-eeeeee", "json"))["drills"][0][
        "trend_summary"
    ] == {"drills": 3, "passed": 1, "failed": 2, "unknown": 0}


def test_drill_report_of_a_drill_that_never_verified(ledger):
    add_drill(
        ledger,
        "r1",
        status="failed",
        rto_s=None,
        files_verified=0,
        passed=False,
        reason="Restore the files from the latest archive: Connection closed by remote host",
    )
    (one,) = drill(ledger, "r1")["drills"]
    assert one["rto_s"] is None and one["rto_met"] is None
    html = drill_report(ledger, "r1", "html")
    assert "not measured" in html and "Connection closed by remote host" in html


def test_a_run_without_a_drill_has_no_drill_report(ledger):
    add_run(ledger, "r1", {"app1": "ok"}, {"app1": {"patch": {}}})
    with pytest.raises(UserError, match="recorded no drill result"):
        drill_report(ledger, "r1", "html")
    with pytest.raises(UserError, match="no run 'nope'"):
        drill_report(ledger, "nope", "html")


def test_drill_report_escapes_what_it_shows(ledger):
    add_drill(ledger, "r1", reason="<script>alert(1)</script>", passed=False)
    assert "<script>alert(1)" not in drill_report(ledger, "r1", "html")


def test_runs_that_never_finished_count_as_failed_against_the_hosts_they_held(ledger):
    """A canceled, timed-out or killed run records no per-host outcome."""
    for run_id, kind, status in (
        ("c1", "run.finished", "canceled"),
        ("t1", "run.finished", "timeout"),
        ("k1", "run.interrupted", "interrupted"),
    ):
        ledger.append("run.started", run_id, {"run_id": run_id, "hosts": ["app1", "app2"]})
        ledger.append(kind, run_id, {"run_id": run_id, "status": status, "hosts": {}})
    rows = {h["host"]: h for h in compliance(ledger, "2000-01-01")["hosts"]}
    assert rows["app1"]["failed_runs"] == ["c1", "t1", "k1"]
    assert rows["app2"]["failed_runs"] == ["c1", "t1", "k1"]


def test_who_shows_the_person_behind_sudo_or_a_shared_login(ledger):
    for run_id, person in (
        ("r1", {"kind": "user", "name": "root", "uid": 0, "sudo_user": "alice", "sudo_uid": 1000}),
        ("r2", {"kind": "user", "name": "deploy", "login_user": "bob", "login_uid": 1001}),
        ("r3", {"kind": "user", "name": "root", "sudo_user": "alice", "login_user": "alice"}),
    ):
        ledger.append("run.started", run_id, {"run_id": run_id, "who": person})
    runs = load_runs(ledger)
    assert runs["r1"].who == "user:root (sudo from alice)"
    assert runs["r2"].who == "user:deploy (logged in as bob)"
    assert runs["r3"].who == "user:root (sudo from alice)"


def test_a_run_is_reported_with_its_first_end_only(ledger):
    """A second terminal entry is a forgery (verify names it): it never replaces the end."""
    add_run(ledger, "r1", {"app1": "failed"}, status="failed")
    forge(ledger, "run.finished", "r1", {"run_id": "r1", "status": "successful", "hosts": {}})
    run = load_runs(ledger)["r1"]
    assert run.status == "failed" and run.end.seq == 2
    assert [e.seq for e in run.entries] == [1, 2, 3]  # the report lists the forged one too
    assert (
        "ends run r1 a second time"
        in json.loads(run_report(ledger, "r1", "json"))["ledger"]["problem"]
    )
