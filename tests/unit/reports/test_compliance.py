"""The compliance report states only what the evidence shows: the archive's own time, every
host of the inventory, drills under the system drilled, limits from data, and a title that
names the period."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from runner.core.errors import UserError
from runner.ledger.store import Ledger
from runner.reports.compliance import (
    Inventory,
    Limit,
    Thresholds,
    compliance,
    compliance_report,
    load_thresholds,
    thresholds_from,
)
from tests.helpers import techops
from tests.ledgers import add_drill, add_run, drill_evidence
from tests.unit.ledger.test_evidence import backup_evidence

INVENTORY = Inventory(
    "inventories/test/hosts.yml",
    {
        "app1": frozenset({"all", "app", "backup_clients"}),
        "app2": frozenset({"all", "app", "backup_clients"}),
        "bastion1": frozenset({"all", "bastion"}),
        "standby1": frozenset({"all", "dr_standby"}),
    },
)


def ago(**delta) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def rows(ledger, **kwargs) -> dict[str, dict]:
    return {h["host"]: h for h in compliance(ledger, inventory=INVENTORY, **kwargs)["hosts"]}


def patch(status="ok", **changes):
    return {
        "patch": {"status": status, "check_mode": False, "security_pending_after": 0, **changes}
    }


def test_the_backup_age_is_the_archives_not_the_runs(ledger):
    add_run(
        ledger,
        "r1",
        {"app1": "ok"},
        {"app1": {"backup": backup_evidence(archive_time=ago(hours=30))}},
    )
    row = rows(ledger)["app1"]
    assert 29.9 <= row["backup_age_hours"] <= 30.1  # the run itself ended a moment ago
    assert row["backup_status"] == "breach"
    assert any("over the limit of 26 h" in f for f in row["flags"])


@pytest.mark.parametrize("published", [{"archive_time": None}, {}], ids=["null", "missing"])
def test_a_repository_without_an_archive_shows_never_and_is_flagged(ledger, published):
    found = backup_evidence(archive=None, age_s=None, archives=0, files=None, bytes=None)
    del found["archive_time"]
    add_run(ledger, "r1", {"app1": "ok"}, {"app1": {"backup": {**found, **published}}})
    row = rows(ledger)["app1"]
    assert row["last_backup"] is None and row["backup_age_hours"] is None
    assert row["backup_status"] == "never"
    assert any("no backup archive: run r1 found none" in f for f in row["flags"])
    cells = {
        r["host"]: r
        for r in csv.DictReader(
            io.StringIO(compliance_report(ledger, None, "csv", inventory=INVENTORY))
        )
    }
    assert cells["app1"]["last_backup"] == "never"
    assert cells["app1"]["backup_status"] == "never"
    html = compliance_report(ledger, None, "html", inventory=INVENTORY)
    app1 = html.split('<td class="mono">app1', 1)[1].split("</tr>", 1)[0]
    assert "<td>never</td>" in app1 and '<span class="status s-failed">never</span>' in app1


def test_an_unreadable_archive_time_is_unknown_not_never(ledger):
    add_run(
        ledger,
        "r1",
        {"app1": "ok"},
        {"app1": {"backup": backup_evidence(archive_time="2026-11-21 01:00")}},
    )
    row = rows(ledger)["app1"]
    assert row["backup_status"] == "unknown"
    assert {"last_backup", "backup_age_hours"} <= set(row["unknown"])
    assert any("the archive's time is unreadable" in f for f in row["flags"])


def test_every_host_of_the_inventory_appears_and_others_too(ledger):
    add_run(ledger, "r1", {"app1": "ok", "old9": "ok"}, {"app1": patch(), "old9": patch()})
    found = rows(ledger)
    assert set(found) == {"app1", "app2", "bastion1", "standby1", "old9"}
    assert not found["bastion1"]["recorded"]
    assert "nothing recorded: no run in the ledger touched this host" in found["bastion1"]["flags"]
    assert found["bastion1"]["patch_status"] == "never"
    assert found["old9"]["in_inventory"] is False
    assert any(f.startswith("not in the inventory") for f in found["old9"]["flags"])
    # Outside the inventory only the checks for all hosts apply: old9's groups are unknown.
    assert (found["old9"]["patch_status"], found["old9"]["backup_status"]) == ("ok", "not required")
    assert found["app1"]["in_inventory"] is True and found["app1"]["recorded"]


def test_a_drill_is_filed_under_the_system_drilled_naming_the_standby(ledger):
    add_drill(ledger, "r1", started=ago(days=2))
    found = rows(ledger)
    assert found["app1"]["drill_run"] == "r1"
    assert found["app1"]["drill_standby"] == "standby1"
    assert found["app1"]["drill_passed"] is True and found["app1"]["drill_status"] == "ok"
    assert 1.9 <= found["app1"]["drill_age_days"] <= 2.1
    assert found["standby1"]["drill_run"] is None
    assert found["standby1"]["drill_status"] == "not required"
    assert found["app2"]["drill_status"] == "never"  # a backup client never restored


def test_a_failed_drill_and_an_old_one_are_flagged(ledger):
    add_drill(ledger, "r1", started=ago(days=60))
    add_drill(ledger, "r2", source="app2", passed=False, reason="RTO 1200 s exceeds the target")
    found = rows(ledger)
    assert found["app1"]["drill_status"] == "breach"
    assert found["app2"]["drill_status"] == "failed"
    assert any("RTO 1200 s exceeds the target" in f for f in found["app2"]["flags"])


def test_a_patch_counts_only_when_its_evidence_says_it_succeeded(ledger):
    add_run(
        ledger,
        "r1",
        {"app1": "rescued", "app2": "ok"},
        {"app1": patch("failed"), "app2": patch(None)},
    )
    found = rows(ledger)
    assert found["app1"]["last_patch"] is None and found["app1"]["patch_status"] == "never"
    assert found["app2"]["last_patch"] is None and found["app2"]["patch_status"] == "unknown"
    assert any("whether it succeeded is unknown" in f for f in found["app2"]["flags"])


def test_limits_and_their_groups_come_from_data(ledger, tmp_path):
    schedules = tmp_path / "schedules.yml"
    schedules.write_text(
        "jobs: []\n"
        "compliance:\n"
        "  patch: {max_age_days: 7}\n"
        "  backup: {max_age_hours: 48, groups: [app]}\n"
    )
    limits = load_thresholds(schedules)
    assert limits.patch == Limit(7, "days", ("all",))
    assert limits.backup == Limit(48, "hours", ("app",))
    assert limits.drill == Thresholds().drill  # not given: the default
    assert limits.source.endswith("schedules.yml: compliance")
    add_run(
        ledger,
        "r1",
        {"app1": "ok"},
        {"app1": {**patch(), "backup": backup_evidence(archive_time=ago(hours=30))}},
    )
    ledger.append("run.started", "r0", {"run_id": "r0"})  # still running: no judgement
    found = rows(ledger, thresholds=limits, now=datetime.now(UTC) + timedelta(days=8))
    assert found["app1"]["patch_status"] == "breach"  # 8 days > 7
    assert found["app1"]["backup_status"] == "breach"  # 30 h + 8 days > 48 h
    assert found["bastion1"]["backup_status"] == "not required"
    assert found["app1"]["drill_status"] == "never"


def test_defaults_apply_without_a_compliance_section(tmp_path):
    (tmp_path / "schedules.yml").write_text("jobs: []\n")
    assert load_thresholds(tmp_path / "schedules.yml").patch == Thresholds().patch
    assert "defaults" in load_thresholds(tmp_path / "schedules.yml").source
    assert "not found" in load_thresholds(tmp_path / "nothing.yml").source


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"patch": {"max_age_days": 0}}, "compliance.patch.max_age_days must be a positive number"),
        ({"patch": {"max_age_days": "a week"}}, "must be a positive number"),
        ({"backup": {"max_age_days": 1, "max_age_hours": 2}}, "not both"),
        ({"drill": {"groups": "app"}}, "compliance.drill.groups must be a list"),
        ({"drill": {"every": 3}}, "compliance.drill: unknown key(s) every"),
        ({"audit": {}}, "compliance: unknown key(s) audit"),
        (["patch"], "compliance must be a mapping"),
    ],
)
def test_a_limit_that_cannot_be_read_is_refused(section, says):
    with pytest.raises(UserError, match=says.replace("(", r"\(").replace(")", r"\)")):
        thresholds_from(section, "schedules.yml: compliance")


def test_breaches_are_flagged_in_every_format(ledger):
    add_run(
        ledger,
        "r1",
        {"app1": "ok"},
        {"app1": {"backup": backup_evidence(archive_time=ago(hours=40))}},
    )
    data = json.loads(compliance_report(ledger, None, "json", inventory=INVENTORY))
    app1 = next(h for h in data["hosts"] if h["host"] == "app1")
    assert app1["backup_status"] == "breach" and app1["flags"]
    assert data["thresholds"]["backup"] == {"max_age_hours": 26, "groups": ["backup_clients"]}
    table = {
        r["host"]: r
        for r in csv.DictReader(
            io.StringIO(compliance_report(ledger, None, "csv", inventory=INVENTORY))
        )
    }
    assert table["app1"]["backup_status"] == "breach"
    assert "over the limit of 26 h" in table["app1"]["flags"]
    html = compliance_report(ledger, None, "html", inventory=INVENTORY)
    assert '<span class="status s-failed">breach</span>' in html
    assert "over the limit of 26 h" in html
    md = compliance_report(ledger, None, "md", inventory=INVENTORY)
    assert "| BREACH |" in md
    assert "- `app1`: latest archive" in md and "over the limit of 26 h" in md


def test_runs_outside_techops_are_counted_in_every_format(ledger):
    """Runs started with plain ansible-playbook (recorded by the ledger callback) are
    counted per host and for the period, and those it refused apart, in every format."""
    add_run(ledger, "r1", {"app1": "ok"})
    add_run(ledger, "r2", {"app1": "changed", "app2": "ok"}, unwrapped=True)
    add_run(ledger, "r3", {"app2": "ok"}, unwrapped=True, check=True)
    ledger.append(
        "change.decision",
        "r4",
        {"run_id": "r4", "action": "refuse", "unwrapped": True, "environment": "production"},
    )
    ledger.append("change.decision", "r5", {"run_id": "r5", "action": "refuse"})  # techops'
    data = json.loads(compliance_report(ledger, None, "json", inventory=INVENTORY))
    assert data["unwrapped"] == {
        "runs": ["r2", "r3"],
        "count": 2,
        "refused": ["r4"],
        "refused_count": 1,
    }
    hosts = {h["host"]: h for h in data["hosts"]}
    assert hosts["app1"]["unwrapped_runs"] == ["r2"]
    assert hosts["app2"]["unwrapped_runs"] == ["r2", "r3"]
    assert hosts["bastion1"]["unwrapped_runs"] == []
    assert (
        "2 run(s) started outside techops, with plain ansible-playbook: r2 r3"
        in (hosts["app2"]["flags"])
    )
    table = {
        r["host"]: r
        for r in csv.DictReader(
            io.StringIO(compliance_report(ledger, None, "csv", inventory=INVENTORY))
        )
    }
    assert table["app2"]["unwrapped_runs"] == "r2 r3"
    assert table["bastion1"]["unwrapped_runs"] == ""
    md = compliance_report(ledger, None, "md", inventory=INVENTORY)
    assert "at any time: 2 recorded (r2, r3), 1 refused before their first task" in md
    assert "| Unwrapped runs |" in md and "| r2 r3 |" in md
    html = compliance_report(ledger, None, "html", inventory=INVENTORY)
    assert "<strong>2 recorded</strong>" in html and "1 refused before their first task" in html
    assert '<td class="mono">r2 r3</td>' in html
    # A period counts only the runs and refusals it holds.
    later = compliance(ledger, "9999-01-01", inventory=INVENTORY)
    assert later["unwrapped"]["count"] == later["unwrapped"]["refused_count"] == 0


def test_the_title_names_the_period(ledger):
    add_run(ledger, "r1", {"app1": "ok"})
    now = datetime(2026, 12, 3, 11, 40, 12, tzinfo=UTC)
    whole = compliance(ledger, None, now=now)
    assert whole["title"] == "Compliance, all records up to 2026-12-03 11:40 UTC"
    period = compliance(ledger, "2026-11-01T00:00:00.000000+00:00", now=now)
    assert period["title"] == "Compliance since 2026-11-01 00:00 UTC until 2026-12-03 11:40 UTC"
    html = compliance_report(ledger, None, "html", now=now)
    assert "<title>Compliance, all records up to 2026-12-03 11:40 UTC</title>" in html
    assert "0000" not in html
    assert compliance_report(ledger, None, "md", now=now).startswith(
        "# Compliance, all records up to 2026-12-03 11:40 UTC"
    )


# ---------------------------------------------------------------------- the command


def _ledger(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger.open(url)
    add_run(
        ledger, "20261201T000000Z-aaaaaa", {"app1": "ok"}, {"app1": {"drill": drill_evidence()}}
    )
    ledger.close()
    return url


def test_the_command_lists_the_hosts_of_the_inventory(tmp_path):
    url = _ledger(tmp_path)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    app:\n      hosts:\n        app1:\n        app2:\n"
        "    backup_clients:\n      children:\n        app:\n"
    )
    proc = techops(
        "report", "compliance", "-i", str(inventory), "--format", "json", "--ledger", url
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {h["host"] for h in data["hosts"]} == {"app1", "app2"}
    app2 = next(h for h in data["hosts"] if h["host"] == "app2")
    assert app2["backup_status"] == "never"  # a backup client through `children: app:`
    assert data["inventory"] == str(inventory)
    proc = techops("report", "compliance", "-i", str(inventory), "--format", "md", "--ledger", url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# Compliance, all records up to ")


def test_the_command_defaults_to_the_configured_inventory_and_reads_the_limits(tmp_path):
    url = _ledger(tmp_path)
    root = tmp_path / "root"
    (root / "site").mkdir(parents=True)
    (root / "ansible.cfg").write_text("[defaults]\ninventory = site/hosts.yml\n")
    (root / "site" / "hosts.yml").write_text("all:\n  hosts:\n    web9:\n")
    (root / "schedules.yml").write_text("compliance:\n  patch: {max_age_days: 3}\n")
    proc = techops(
        "report", "compliance", "--format", "json", "--ledger", url, env={"TECHOPS_ROOT": str(root)}
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["inventory"] == "site/hosts.yml"
    assert {h["host"] for h in data["hosts"]} == {"web9", "app1"}
    assert data["thresholds"]["patch"] == {"max_age_days": 3, "groups": ["all"]}
    assert data["thresholds"]["source"] == "schedules.yml: compliance"


def test_the_command_refuses_what_it_cannot_use(tmp_path):
    url = _ledger(tmp_path)
    proc = techops("report", "compliance", "-i", str(tmp_path / "nope.yml"), "--ledger", url)
    assert proc.returncode == 1
    assert (
        "does not exist" in proc.stderr and "name the inventory to report on with -i" in proc.stderr
    )
    proc = techops("report", "access", "-i", str(tmp_path), "--ledger", url)
    assert proc.returncode == 5
    assert "-i/--inventory applies to the compliance report only" in proc.stderr
