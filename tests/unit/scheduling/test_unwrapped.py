"""Runs outside the wrapper: what the ledger callback decides for a plain ansible-playbook
run, and how it records one, on both ledger back ends. (The callback itself, in a real
ansible-playbook, is tested in tests/unit/plugins/test_techops_ledger.py.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import UTC, datetime

import pytest

from runner.execution.request import RUN_MARKER, RunRequest
from runner.ledger.recorder import Recorder, process_start
from runner.scheduling import changes, protect, unwrapped
from runner.scheduling.unwrapped import (
    QUIET,
    RECORD,
    REFUSE,
    UNRECORDED,
    Invocation,
    UnwrappedRun,
    ancestors,
    decide,
    marker_refused,
    rc_from_counters,
    refuse,
)
from tests.helpers import REPO

PLAYBOOK = REPO / "tests" / "fixtures" / "playbooks" / "mixed_outcomes.yml"


@pytest.fixture
def places(tmp_path, monkeypatch, ledger_url):
    """The ledger techops would open (TECHOPS_LEDGER), and an environments file naming a
    protected inventory of our own (hosts never contacted: nothing runs here)."""
    monkeypatch.setenv("TECHOPS_LEDGER", ledger_url)
    prod = tmp_path / "prod"
    prod.mkdir()
    (prod / "hosts.yml").write_text("all:\n  hosts:\n    prod1: {ansible_connection: local}\n")
    lab = tmp_path / "lab.yml"
    lab.write_text("all:\n  hosts:\n    app1: {ansible_connection: local}\n")
    environments = tmp_path / "environments.yml"
    environments.write_text(
        "environments:\n"
        f"  - {{name: prodlike, inventories: [{prod}], protected: true}}\n"
        f"  - {{name: lablike, inventories: [{lab}], protected: false}}\n"
    )
    monkeypatch.setenv("TECHOPS_ENVIRONMENTS", str(environments))
    return {"prod": str(prod / "hosts.yml"), "lab": str(lab)}


def invocation(inventory: str, **fields) -> Invocation:
    return Invocation(playbook=PLAYBOOK, inventories=(inventory,), **fields)


def started_by(ledger, pid: int, *, host: str | None = None, pid_start: str | None = None) -> str:
    """A run techops opened, as its recorder writes run.started, by process `pid`."""
    run_id = f"20261203T120000Z-{pid:06x}"[:23]
    ledger.append(
        "run.started",
        run_id,
        {
            "run_id": run_id,
            "controller": {
                "host": host or socket.gethostname(),
                "pid": pid,
                "pid_start": pid_start or process_start(pid),
            },
        },
    )
    return run_id


# ---------------------------------------------------------------------- the wrapper's marker


def test_a_run_techops_started_is_left_to_techops(ledger, places):
    """The marker names a run open in the ledger, opened by a process this one descends
    from (here our parent stands for the techops process that runs ansible-playbook)."""
    run_id = started_by(ledger, os.getppid())
    decision = decide(invocation(places["prod"]), {RUN_MARKER: run_id})
    assert decision.action == QUIET
    assert [e.kind for e in ledger.entries()] == ["run.started"]


def test_a_marker_that_names_no_open_run_of_an_ancestor_is_not_taken(ledger, places):
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        not_ours = started_by(ledger, stranger.pid)
        elsewhere = started_by(ledger, os.getppid() + 1, host="another-controller")
        reused = started_by(ledger, os.getppid(), pid_start="1")
        ended = started_by(ledger, 1)
        ledger.append("run.finished", ended, {"run_id": ended, "status": "successful"})
        said = {
            "unknown": marker_refused(ledger, "20261203T000000Z-000000"),
            "not ours": marker_refused(ledger, not_ours),
            "elsewhere": marker_refused(ledger, elsewhere),
            "reused": marker_refused(ledger, reused),
            "ended": marker_refused(ledger, ended),
        }
    finally:
        stranger.kill()
        stranger.wait()
    assert "no run 20261203T000000Z-000000 in the ledger" in said["unknown"]
    assert f"started by process {stranger.pid}, which did not start this one" in said["not ours"]
    assert "started on another-controller, not on this machine" in said["elsewhere"]
    assert "is gone (its pid is reused)" in said["reused"]
    assert "has already ended" in said["ended"]
    # Not taken, the run is recorded as any plain run, saying why.
    decision = decide(invocation(places["lab"]), {RUN_MARKER: not_ours})
    assert decision.action == RECORD
    assert f"{RUN_MARKER}={not_ours} was not taken" in (decision.said or "")


def test_a_process_descends_from_its_parent_and_theirs():
    child = subprocess.Popen(["sleep", "30"])
    try:
        found = ancestors(child.pid)
    finally:
        child.kill()
        child.wait()
    assert found[:2] == [os.getpid(), os.getppid()]
    assert child.pid not in ancestors(os.getpid())


# ---------------------------------------------------------------------- protected inventories


def test_a_run_on_a_protected_inventory_is_refused_and_the_refusal_recorded(ledger, places):
    decision = decide(invocation(places["prod"], limit="prod1"), {})
    assert decision.action == REFUSE
    assert decision.environment is not None and decision.environment.name == "prodlike"
    line = refuse(decision, invocation(places["prod"], limit="prod1"))
    assert line.startswith("techops: refused: inventory ")
    assert "protected environment 'prodlike'" in line and "`techops run`" in line
    assert f"the refusal is recorded in the ledger ({decision.run_id})" in line
    assert "\n" not in line
    (entry,) = list(ledger.entries())
    assert entry.kind == "change.decision"
    assert entry.body["action"] == "refuse" and entry.body["unwrapped"] is True
    assert entry.body["environment"] == "prodlike"
    assert entry.body["inventory"] == places["prod"]
    assert entry.body["limit"] == "prod1"
    assert entry.body["decision"] in line


def test_a_check_mode_run_on_a_protected_inventory_is_recorded_with_its_decision(
    ledger, places, monkeypatch
):
    """As `techops run` admits it: a committed playbook in check mode (the checkout's
    content taken as clean here; tests/unit/scheduling/test_changes.py tests that rule)."""
    monkeypatch.setattr(changes, "git_commit", lambda root=None: "0" * 40)
    decision = decide(invocation(places["prod"], check=True), {})
    assert decision.action == RECORD and decision.environment is not None
    run = UnwrappedRun(
        decision, invocation(places["prod"], check=True), extravars={}, hosts=["prod1"], known=set()
    )
    run.start()
    kinds = [(e.kind, e.body.get("action")) for e in ledger.entries()]
    assert kinds == [("change.decision", "fire"), ("run.started", None)]
    started = list(ledger.entries())[1].body
    assert started["check"] is True and started["unwrapped"] is True
    assert started["hosts"] == ["prod1"]


def test_a_ledger_that_cannot_be_opened_stops_a_protected_run_only(places, monkeypatch):
    monkeypatch.setenv("TECHOPS_LEDGER", "mysql://nobody@nowhere/ledger")
    protected = decide(invocation(places["prod"], check=True), {})
    assert protected.action == REFUSE and protected.ledger is None
    line = refuse(protected, invocation(places["prod"]))
    assert "the ledger cannot be opened" in line and "unsupported ledger URL" in line
    assert line.endswith("the refusal could not be recorded")
    other = decide(invocation(places["lab"]), {})
    assert other.action == UNRECORDED
    assert "this run is not recorded: unsupported ledger URL" in (other.said or "")


def test_environments_that_cannot_be_read_stop_every_run(ledger, places, tmp_path, monkeypatch):
    """Fail closed: whether the inventory is protected cannot be told."""
    monkeypatch.setenv("TECHOPS_ENVIRONMENTS", str(tmp_path / "missing.yml"))
    decision = decide(invocation(places["lab"]), {})
    assert decision.action == REFUSE
    assert "cannot tell whether" in (decision.said or "") and "does not exist" in (
        decision.said or ""
    )


def test_any_protected_source_among_several_protects_the_run(ledger, places):
    both = Invocation(playbook=PLAYBOOK, inventories=(places["lab"], places["prod"]))
    assert decide(both, {}).action == REFUSE
    assert both.inventory == f"{places['lab']},{places['prod']}"


# ---------------------------------------------------------------------- the record


def test_an_unwrapped_run_is_recorded_like_a_techops_run_and_marked(
    ledger, places, recorded_events
):
    """The events ansible-runner delivered for a real run, fed as the callback feeds
    them: the same record as the recorder writes for `techops run`, marked unwrapped, with
    the run's secrets (extra vars, inventory values the callback found) redacted."""
    decision = decide(invocation(places["lab"], limit="all"), {})
    run = UnwrappedRun(
        decision,
        invocation(places["lab"], limit="all"),
        extravars={"db_password": "CANARY-extra-secret", "batch": 2},
        hosts=["app1"],
        known={"CANARY-inventory-token"},
    )
    run.start()
    for event in recorded_events:
        run.on_event(event)
    run.finish()
    started, finished = list(ledger.entries())
    assert started.body["unwrapped"] is True
    assert "plain ansible-playbook" in started.body["unwrapped_detail"]
    assert started.body["extra_vars"] == {"db_password": "**redacted**", "batch": 2}
    assert started.body["limit"] == "all"
    assert (finished.body["status"], finished.body["rc"]) == ("failed", 2)
    assert finished.body["events"]["count"] == len(recorded_events)
    # The same end as the recorder writes from the same events for a techops run.
    other = Recorder(ledger)
    other.on_start(invocation_request(places["lab"]))
    for event in recorded_events:
        other.on_event(event)
    other.finish("failed", 2)
    wrapped = list(ledger.entries())[-1].body
    for key in ("hosts", "failed_tasks", "changed_tasks", "evidence"):
        assert finished.body[key] == wrapped[key], key
    assert list(ledger.entries())[-2].body["unwrapped"] is False
    dump = json.dumps([e.body for e in ledger.entries()])
    dump += json.dumps(ledger.run_events(run.run_id))
    assert "CANARY" not in dump
    assert ledger.verify().ok


def invocation_request(inventory: str) -> RunRequest:
    return RunRequest(playbook=PLAYBOOK, inventory=inventory, limit="all")


def test_a_run_that_ended_without_a_recap_is_an_error(ledger, places):
    decision = decide(invocation(places["lab"]), {})
    run = UnwrappedRun(decision, invocation(places["lab"]), extravars={}, hosts=None, known=set())
    run.start()
    run.on_event({"event": "playbook_on_start", "counter": 1, "event_data": {}})
    run.finish()
    finished = list(ledger.entries())[-1].body
    assert (finished["status"], finished["rc"]) == ("error", 1)
    assert finished["duration_s"] >= 0
    assert datetime.fromisoformat(list(ledger.entries())[-1].created) <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("stats", "rc"),
    [
        ({"a": {"ok": 3}}, 0),
        ({"a": {"ok": 1, "failures": 1}, "b": {"ok": 2}}, 2),
        ({"a": {"dark": 1}, "b": {"failures": 1}}, 4),
        ({"a": {"ok": 1, "rescued": 1}}, 0),
    ],
)
def test_the_exit_code_follows_ansible_playbook(stats, rc):
    assert rc_from_counters(stats) == rc


def test_the_callback_records_and_exits_as_the_gate_of_techops_run_does():
    assert unwrapped.CHANGE_DECISION == protect.CHANGE_DECISION
    assert unwrapped.EXIT_REFUSED == protect.RC_REFUSED


def test_an_environment_that_runs_approved_changes_only_says_so(
    ledger, places, tmp_path, monkeypatch
):
    approving = tmp_path / "approving.yml"
    approving.write_text(
        "environments:\n"
        f"  - {{name: prodlike, inventories: [{tmp_path / 'prod'}], protected: true, "
        "approvals: 1}\n"
    )
    monkeypatch.setenv("TECHOPS_ENVIRONMENTS", str(approving))
    decision = decide(invocation(places["prod"]), {})
    assert decision.action == REFUSE
    assert "`techops run` (--change ID, a change approved with `techops change`)" in (
        decision.said or ""
    )
