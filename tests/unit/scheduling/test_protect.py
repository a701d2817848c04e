"""Protected environments: runs by hand pass the gate scheduled jobs pass, and every
decision is on the record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.core.errors import BadOptions, UserError
from runner.execution.launch import Why
from runner.execution.request import RunRequest, RunResult
from runner.ledger.store import Ledger
from runner.scheduling import protect, signing
from runner.scheduling.environments import environment_of, load
from runner.scheduling.model import load as load_schedules
from tests.helpers import REPO, techops

SCHEDULES = """\
timezone: UTC
windows:
  - {name: app-nightly, groups: [app], cron: "0 2 * * *", duration: 2h}
  - {name: db-sunday, groups: [db], cron: "0 4 * * 0", duration: 1h}
freezes:
  - {name: year-end, groups: [app], start: 2026-12-21, end: 2027-01-02, reason: Year-end freeze}
notify:
  on: [failure, refuse, override]
  webhook: https://hooks.example.invalid/techops
jobs: []
"""
# A Wednesday: 02:30 is inside app-nightly, 12:00 outside; db-sunday is closed all day.
INSIDE = datetime(2026, 12, 2, 2, 30, tzinfo=UTC)
OUTSIDE = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
FROZEN = datetime(2026, 12, 23, 2, 30, tzinfo=UTC)
APP = frozenset({"all", "app"})
DB = frozenset({"all", "db"})


@pytest.fixture
def schedules(tmp_path, monkeypatch):
    path = tmp_path / "schedules.yml"
    path.write_text(SCHEDULES)
    monkeypatch.setenv("TECHOPS_SCHEDULES", str(path))
    return load_schedules(path, check_files=False)


@pytest.fixture
def protected(tmp_path, monkeypatch):
    """A production-like inventory of our own (documentation addresses, never contacted:
    every run here is refused or faked before Ansible starts), declared protected."""
    inventory = tmp_path / "prod"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        "all:\n  children:\n    app:\n      hosts:\n        app1: {ansible_host: 192.0.2.10}\n"
        "        app2: {ansible_host: 192.0.2.11}\n"
        "    db:\n      hosts:\n        db1: {ansible_host: 192.0.2.20}\n"
    )
    environments = tmp_path / "environments.yml"
    environments.write_text(
        f"environments:\n  - {{name: prod, inventories: [{inventory}], protected: true}}\n"
    )
    monkeypatch.setenv("TECHOPS_ENVIRONMENTS", str(environments))
    return inventory / "hosts.yml"


def test_each_host_is_judged_by_its_own_windows_and_freezes(schedules):
    inside = protect.judge(schedules, {"app1": APP}, INSIDE, check=False)
    assert inside.fires and inside.blocked == {}
    # db1's window is closed even though app1's is open: the run would touch db1.
    mixed = protect.judge(schedules, {"app1": APP, "db1": DB}, INSIDE, check=False)
    assert mixed.action == "refuse"
    assert set(mixed.blocked) == {"db1"}
    assert "db1: outside its maintenance windows (next opens 2026-12-06T04:00:00+00:00)" in (
        mixed.reason
    )
    frozen = protect.judge(schedules, {"app1": APP, "app2": APP}, FROZEN, check=False)
    assert frozen.reason == (
        "app1, app2: change freeze 'year-end' until 2027-01-02T23:59:59.999999+00:00: "
        "Year-end freeze"
    )
    lonely = protect.judge(schedules, {"web1": frozenset({"all", "web"})}, INSIDE, check=False)
    assert lonely.blocked == {"web1": "no maintenance window covers its groups (web)"}


def test_check_mode_and_overrides_are_admitted(schedules):
    assert protect.judge(schedules, {"db1": DB}, OUTSIDE, check=True).fires
    override = protect.judge(
        schedules, {"app1": APP}, FROZEN, check=False, override_reason="CVE-2026-0001 in the wild"
    )
    assert override.fires
    assert override.override_reason == "CVE-2026-0001 in the wild"
    assert override.reason.startswith("emergency override (app1: change freeze 'year-end'")


def sent_notifications(monkeypatch) -> list[tuple[str, dict]]:
    sent: list[tuple[str, dict]] = []

    def send(config, event, payload):
        sent.append((event, payload))
        return [{"channel": "webhook", "delivered": True}] if event in config["on"] else []

    monkeypatch.setattr(protect.notify, "send", send)
    return sent


def request_for(inventory: Path, **fields) -> RunRequest:
    return RunRequest(playbook=Path("/repo/playbooks/site.yml"), inventory=str(inventory), **fields)


def test_a_run_without_reason_or_ticket_is_refused_and_recorded(
    schedules, protected, ledger, monkeypatch
):
    sent = sent_notifications(monkeypatch)
    environment = environment_of(str(protected), load())
    with pytest.raises(BadOptions, match="needs --ticket: give --reason WHY and --ticket ID"):
        protect.run_protected(
            request_for(protected), ledger, environment, Why(reason="upgrade"), now=INSIDE
        )
    [decision] = list(ledger.entries(kinds=[protect.CHANGE_DECISION]))
    assert decision.body["action"] == "refuse"
    assert decision.body["environment"] == "prod"
    assert decision.body["who"]["kind"] == "user"
    assert [event for event, _ in sent] == ["refuse"]


def test_a_run_in_a_freeze_is_refused_then_admitted_with_an_override(
    schedules, protected, ledger, monkeypatch
):
    sent = sent_notifications(monkeypatch)
    ran: list[RunRequest] = []

    def fake_run(request, _ledger, why):
        ran.append(request)
        now = datetime.now(UTC)
        return RunResult(request.run_id, "failed", 2, {}, None, now, now)

    monkeypatch.setattr(protect, "run_recorded", fake_run)
    environment = environment_of(str(protected), load())
    why = Why(reason="hotfix", ticket="INC-9")
    limit = {"limit": "app"}
    refused = protect.run_protected(
        request_for(protected, **limit), ledger, environment, why, now=FROZEN
    )
    assert refused is None and ran == []
    result = protect.run_protected(
        request_for(protected, **limit),
        ledger,
        environment,
        why,
        override_reason="payments down",
        now=FROZEN,
    )
    assert result is not None and result.rc == 2
    assert ran[0].extravars["techops_override_reason"] == "payments down"
    first, second = (e.body for e in ledger.entries(kinds=[protect.CHANGE_DECISION]))
    assert first["action"] == "refuse" and set(first["blocked"]) == {"app1", "app2"}
    assert first["hosts"] == ["app1", "app2"]
    assert second["action"] == "fire" and second["override_reason"] == "payments down"
    assert second["ticket"] == "INC-9"
    # Refusal, override and the failed run all reached the targets, and the failure's
    # delivery is on the record.
    assert [event for event, _ in sent] == ["refuse", "override", "failure"]
    assert sent[2][1]["what"] == "/repo/playbooks/site.yml on prod"
    assert sent[2][1]["reason"] == "run failed (rc 2)"
    [notified] = list(ledger.entries(kinds=[protect.CHANGE_NOTIFIED]))
    assert notified.body["event"] == "failure"
    assert ledger.verify().ok


def test_the_command_refuses_without_a_ticket_and_records_it(protected, tmp_path):
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    proc = techops("run", "site", "-i", str(protected), "--reason", "x", "--ledger", ledger)
    assert proc.returncode == 5, proc.stderr
    assert "protected environment 'prod' needs --ticket" in proc.stderr.strip().splitlines()[-1]
    decisions = list(Ledger.open(ledger).entries(kinds=[protect.CHANGE_DECISION]))
    assert [d.body["action"] for d in decisions] == ["refuse"]
    # An override only means something where there is a gate.
    plain = techops("run", "site", "-i", "web9,", "--override-reason", "now", "--ledger", ledger)
    assert plain.returncode == 5
    assert "is in no protected environment" in plain.stderr
    # A host list naming a protected host, by name or address, is that environment.
    listed = techops("run", "site", "-i", "192.0.2.10,", "--reason", "x", "--ledger", ledger)
    assert listed.returncode == 5 and "protected environment 'prod' needs --ticket" in (
        listed.stderr
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("environments: {}\n", "expected `environments:`"),
        ("environments:\n  - {name: p, inventories: x}\n", "inventories must be a list"),
        ("environments:\n  - {name: p, inventories: [x], protected: yes-ish}\n", "true or false"),
        ("environments:\n  - {name: p, inventories: [x], colour: red}\n", "unknown key(s) colour"),
        (
            "environments:\n  - {name: p, inventories: [x]}\n  - {name: p, inventories: [y]}\n",
            "declared twice",
        ),
    ],
)
def test_malformed_environments_are_one_line(tmp_path, content, message):
    path = tmp_path / "environments.yml"
    path.write_text(content)
    with pytest.raises(UserError) as caught:
        load(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_shipped_file_protects_production_and_staging_only():
    declared = {e.name: e for e in load(REPO / "environments.yml")}
    assert declared["production"].protected and declared["staging"].protected
    assert not declared["lab"].protected
    # Production runs signed changes only; the lab needs nothing, so the README's
    # commands are unchanged.
    assert declared["production"].approvals == 1
    assert declared["production"].allowed_signers == REPO / "allowed_signers"
    assert declared["lab"].approvals == 0 and declared["staging"].approvals == 0
    # The shipped file is valid and lists nobody: no change is approvable until it does.
    assert signing.read_allowed_signers(REPO / "allowed_signers") == []
    assert environment_of(str(REPO / "inventories/production/hosts.yml"), list(declared.values()))
    lab = environment_of(str(REPO / "inventories/lab/hosts.yml"), list(declared.values()))
    assert lab is not None and not lab.protected
    assert environment_of("app1,app2,", list(declared.values())) is None
    # A host list that names a production host, by name or address, is production.
    for named in ("203.0.113.21,", "web9, app2.prod.example.com"):
        found = environment_of(named, list(declared.values()))
        assert found is not None and found.name == "production", named


def test_a_run_whose_hosts_cannot_be_told_is_refused_unless_overridden(schedules):
    """Fail closed: an inventory techops cannot read (vaulted whole) yields no hosts, and
    Ansible, with the vault, may still change every one of them."""
    blind = protect.judge(schedules, {}, INSIDE, check=False)
    assert blind.action == "refuse"
    assert blind.reason == "the hosts this run would touch could not be determined"
    assert protect.judge(schedules, {}, INSIDE, check=False, override_reason="now").fires
    assert protect.judge(schedules, {}, INSIDE, check=True).fires


def test_a_directory_holding_or_linking_a_protected_inventory_is_protected(protected, tmp_path):
    declared = load()
    # The parent directory of the protected inventory: -i reads it too.
    assert environment_of(str(protected.parent.parent), declared).name == "prod"
    # A directory of one's own that links to it.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "prod").symlink_to(protected.parent)
    assert environment_of(str(mine), declared).name == "prod"
    unrelated = tmp_path / "other"
    unrelated.mkdir()
    (unrelated / "hosts.yml").write_text("all: {hosts: {x: }}\n")
    assert environment_of(str(unrelated), declared) is None
