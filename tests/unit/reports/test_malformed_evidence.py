"""No report crashes on malformed evidence, and none shows a value of its own where the
evidence has none: wrong types, missing keys and nulls read as "unknown", and are named."""

from __future__ import annotations

import json

import pytest

from runner.reports.access import access_report, access_review
from runner.reports.compliance import Inventory, compliance, compliance_report
from runner.reports.drill import drill, drill_report
from runner.reports.run import run_report
from tests.ledgers import add_drill, add_run, drill_evidence

# Evidence as no role publishes it: the wrong shape at every level.
MALFORMED = {
    "app1": {
        "patch": {"status": None, "security_pending_after": "many", "updates_applied": 3},
        "backup": {"archive_time": 1795000000, "archive": ["x"]},
        "drill": {"source": None, "passed": "perhaps", "rto_s": "fast", "mismatches": "x"},
        "access": {"users": {"bob": "present"}, "revoked": "bob", "automation_exemption": 5},
    },
    "app2": "not a mapping",
    "app3": {"patch": None, "backup": [], "drill": 7, "access": None},
    "_run": {"backup": {"archive_time": None}},
}


@pytest.fixture
def malformed(ledger):
    add_run(ledger, "r1", {"app1": "ok", "app2": "ok", "app3": "ok"}, MALFORMED)
    add_run(ledger, "r2", {"app1": "ok"}, evidence=["not", "a", "mapping", "of", "hosts"])
    return ledger


@pytest.mark.parametrize("fmt", ["html", "json", "csv", "md"])
def test_the_compliance_report_survives_malformed_evidence(malformed, fmt):
    assert compliance_report(malformed, None, fmt)


def test_the_compliance_report_says_unknown_instead_of_guessing(malformed):
    inventory = Inventory(
        "hosts.yml", dict.fromkeys(("app1", "app3"), frozenset({"backup_clients"}))
    )
    hosts = {h["host"]: h for h in compliance(malformed, inventory=inventory)["hosts"]}
    app1 = hosts["app1"]
    assert app1["last_patch"] is None and app1["patch_status"] == "unknown"
    assert app1["backup_status"] == "unknown" and "last_backup" in app1["unknown"]
    assert "_run" not in hosts  # evidence about the run names no host
    assert any("names no system" in flag for flag in app1["flags"])
    assert any("is unreadable: not a mapping of areas" in f for f in hosts["app2"]["flags"])
    assert any("the run's evidence is not a mapping of hosts" in f for f in hosts["app1"]["flags"])
    # A backup record that is no mapping says nothing of an archive: unknown, not never.
    assert hosts["app3"]["backup_status"] == "unknown"
    assert hosts["app3"]["patch_status"] == "unknown"


def test_a_drill_whose_evidence_says_little_is_shown_unknown(ledger):
    evidence = drill_evidence(passed=None, rto_s="fast", db_rows=["x"], kept="perhaps")
    for key in ("source", "standby", "started"):
        del evidence[key]
    add_run(ledger, "r1", {"standby1": "ok"}, {"standby1": {"drill": evidence}})
    data = drill(ledger, "r1")
    (one,) = data["drills"]
    assert data["passed"] is None and one["passed"] is None  # not "failed"
    assert one["system"] is None and one["standby"] is None  # not the standby's name
    assert one["date"] is None  # not the run's start
    assert {"system", "standby", "date", "rto_s", "db_rows", "kept", "passed"} <= set(
        one["unknown"]
    )
    assert one["rto_met"] is None
    assert one["trend_summary"] == {"drills": 1, "passed": 0, "failed": 0, "unknown": 1}
    assert any(p.startswith("rto_s:") for p in one["problems"])
    html = drill_report(ledger, "r1", "html")
    assert "an unknown system restored onto an unknown standby" in html
    assert '<span class="status s-skipped">unknown</span>' in html
    assert "<dt>Drill started (UTC)</dt><dd><strong>unknown</strong></dd>" in html
    md = drill_report(ledger, "r1", "md")
    assert md.startswith("# DR drill r1: UNKNOWN")
    assert "| Restored data | unknown |" in md
    assert "| RTO (start to verified service) | unknown |" in md
    assert json.loads(drill_report(ledger, "r1", "json"))["passed"] is None


def test_a_drill_evidence_that_is_no_mapping_is_still_a_drill_result(ledger):
    add_run(ledger, "r1", {"standby1": "failed"}, {"standby1": {"drill": "garbage"}})
    (one,) = drill(ledger, "r1")["drills"]
    assert one["passed"] is None and one["problems"] == ["expected a mapping, got 'garbage'"]
    assert "unknown" in drill_report(ledger, "r1", "md")


def test_the_drill_trend_keeps_systems_apart_when_one_is_unknown(ledger):
    add_drill(ledger, "r1")
    add_drill(ledger, "r2", source=None)
    (one,) = drill(ledger, "r2")["drills"]
    assert [t["run_id"] for t in one["trend"]] == ["r2"]


def test_the_access_review_survives_and_does_not_assume(ledger):
    add_run(ledger, "r1", {"bastion1": "ok", "app1": "ok"}, MALFORMED)
    user = {"name": "carol", "vpn_peer": "present", "vpn_address": None, "last_handshake": None}
    add_run(
        ledger,
        "r2",
        {"bastion1": "ok"},
        {
            "bastion1": {
                "access": {
                    "users": [user, {**user, "name": "dave", "totp_enrolled": True}],
                    "revoked": ["erin"],
                }
            }
        },
    )
    review = access_review(ledger)
    rows = {r["user"]: r for r in review["users"]}
    assert set(rows) == {"carol", "dave", "erin"}  # nothing from the malformed run
    carol = rows["carol"]
    assert carol["state"] is None and "state" in carol["unknown"]  # not "present"
    assert carol["totp_enrolled"] is None and "totp_enrolled" in carol["unknown"]  # not "no"
    assert carol["last_handshake"] is None and "last_handshake" not in carol["unknown"]
    erin = rows["erin"]
    assert erin["state"] == "absent" and erin["revoked_by_run"] == "r2"
    assert erin["totp_enrolled"] is None and "totp_enrolled" in erin["unknown"]
    assert any(p["host"] == "app1" for p in review["evidence_problems"])
    html = access_report(ledger, "html")
    carol_row = html.split('<td class="mono">carol</td>', 1)[1].split("</tr>", 1)[0]
    assert carol_row.count("<strong>unknown</strong>") == 2
    assert "<td>never</td>" in carol_row  # a published null handshake is "never"
    assert "Evidence that does not fit its declaration" in html
    table = access_report(ledger, "csv").splitlines()
    assert table[1].startswith("carol,bastion1,unknown,present,,,unknown,r2,")


def test_a_revoked_user_keeps_what_the_host_showed(ledger):
    """The revocation does not overwrite what the same run measured (a secret left behind)."""
    bob = {
        "name": "bob",
        "state": "absent",
        "vpn_peer": "absent",
        "vpn_address": None,
        "last_handshake": None,
        "totp_enrolled": True,
    }
    add_run(
        ledger,
        "r1",
        {"bastion1": "ok"},
        {"bastion1": {"access": {"users": [bob], "revoked": ["bob"]}}},
    )
    (row,) = access_review(ledger)["users"]
    assert row["state"] == "absent" and row["totp_enrolled"] is True and row["unknown"] == []


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_the_run_report_survives_malformed_evidence(malformed, fmt):
    assert run_report(malformed, "r1", fmt)
    assert run_report(malformed, "r2", fmt)


def test_the_run_report_shows_unknown_and_names_the_problems(ledger):
    add_run(
        ledger,
        "r1",
        {"app1": "ok", "standby1": "ok"},
        {
            "app1": {"patch": {"status": "ok", "rebooted": "yes", "updates_applied": 3}},
            "standby1": {"drill": drill_evidence(passed=None, rto_s=None)},
            "app2": None,
        },
    )
    html = run_report(ledger, "r1", "html")
    patch_table = html.split("<h3>patch</h3>", 1)[1]
    patch_row = patch_table.split('<td class="mono">app1</td>', 1)[1].split("</tr>", 1)[0]
    assert "<td>unknown (unknown)</td><td>unknown</td><td>unknown</td>" in patch_row
    drill_table = html.split("<h3>drill</h3>", 1)[1]
    drill_row = drill_table.split('<td class="mono">standby1</td>', 1)[1].split("</tr>", 1)[0]
    assert '<span class="status s-skipped">unknown</span>' in drill_row  # not "failed"
    assert "not measured (900 s)" in drill_row
    assert "rebooted: expected true or false, got &#39;yes&#39;" in html
    assert "not a mapping of areas" in html
    data = json.loads(run_report(ledger, "r1", "json"))
    assert {"host": "app2", "area": "", "problem": "not a mapping of areas"} in data[
        "evidence_problems"
    ]
    md = run_report(ledger, "r1", "md")
    assert "Evidence that does not fit its declaration" in md
