"""The recorder, fed the recorded events of a real run, writes the whole record."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.execution.request import RunRequest, RunResult
from runner.ledger.recorder import Recorder, host_outcome, open_runs, reap_interrupted
from runner.ledger.store import Ledger, events


def record(ledger: Ledger, events: list[dict], tmp_path: Path, **kwargs) -> Recorder:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    app1:\n      api_token: CANARY-inventory-token\n")
    request = RunRequest(
        playbook=Path("tests/fixtures/playbooks/mixed_outcomes.yml"),
        inventory=str(inventory),
        limit="all",
        extravars={"db_password": "CANARY-extra-secret", "batch": 2},
    )
    recorder = Recorder(ledger, reason="quarterly check", ticket="CHG-42", **kwargs)
    recorder.on_start(request)
    for event in events:
        recorder.on_event(event)
    now = datetime.now(UTC)
    recorder.on_finish(RunResult(request.run_id, "failed", 2, {}, None, now, now))
    return recorder


def test_a_run_is_a_started_and_a_finished_entry(ledger, recorded_events, tmp_path):
    recorder = record(ledger, recorded_events, tmp_path)
    kinds = [e.kind for e in ledger.entries()]
    assert kinds == ["run.started", "run.finished"]
    started, finished = list(ledger.entries())
    assert started.body["reason"] == "quarterly check"
    assert started.body["ticket"] == "CHG-42"
    assert started.body["who"]["kind"] == "user"
    assert started.body["extra_vars"] == {"db_password": "**redacted**", "batch": 2}
    assert len(started.body["inventory"]["sha256"]) == 64
    assert started.body["versions"]["ansible-core"].startswith("2.19")
    assert "community.general" in started.body["versions"]["collections"]
    assert finished.body["status"] == "failed"
    assert finished.body["events"]["count"] == len(recorded_events)
    assert recorder.event_count == len(recorded_events)
    assert ledger.verify().ok


def test_per_host_outcomes_failures_changes_and_evidence(ledger, recorded_events, tmp_path):
    record(ledger, recorded_events, tmp_path)
    finished = next(ledger.entries(kinds=["run.finished"])).body
    hosts = finished["hosts"]
    assert hosts["app2"]["outcome"] == "failed"
    assert hosts["app1"]["outcome"] == "changed"
    assert hosts["backup"]["outcome"] == "rescued"
    assert hosts["bastion"]["outcome"] == "ok"
    failed = [(t["host"], t["msg"]) for t in finished["failed_tasks"]]
    assert ("app2", "planned failure on app2") in failed
    assert [t["host"] for t in finished["changed_tasks"]] == ["app1"]
    assert finished["evidence"]["app1"] == {"fixture": {"checked": "app1"}}


def test_event_detail_is_stored_and_redacted(ledger, recorded_events, tmp_path):
    record(ledger, recorded_events, tmp_path)
    run_id = next(ledger.entries()).run_id
    stored = ledger.run_events(run_id)
    assert len(stored) == len(recorded_events)
    assert "CANARY" not in json.dumps(stored)


def test_nothing_secret_reaches_the_ledger(ledger, recorded_events, tmp_path):
    # The no_log task of the fixture handled CANARY-fixture-7f3e; extra vars and the
    # inventory hold canaries too.
    record(ledger, recorded_events, tmp_path)
    dump = json.dumps([e.body for e in ledger.entries()])
    dump += json.dumps(ledger.run_events(next(ledger.entries()).run_id))
    assert "CANARY" not in dump


def test_a_dead_run_is_marked_interrupted(ledger, tmp_path):
    request = RunRequest(playbook=Path("site.yml"), inventory="h1,")
    recorder = Recorder(ledger)
    recorder.on_start(request)
    # Pretend the process that started it is gone.
    assert reap_interrupted(ledger) == []  # this process is alive
    ledger.append(
        "run.started",
        "dead-run",
        {
            "controller": {
                "host": next(ledger.entries()).body["controller"]["host"],
                "pid": 999999,
                "pid_start": "1",
            }
        },
    )
    assert reap_interrupted(ledger) == ["dead-run"]
    assert "dead-run" not in open_runs(ledger)
    assert request.run_id in open_runs(ledger)


def test_a_dead_runs_unscrubbed_artifacts_are_removed(ledger, tmp_path, monkeypatch):
    """Only a run's end scrubs its artifacts; a killed run's raw files may hold secrets."""
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    raw = tmp_path / ".techops" / "runs" / "dead-run" / "env"
    raw.mkdir(parents=True)
    (raw / "extravars").write_text('{"db_password": "CANARY-raw"}')
    ledger.append(
        "run.started",
        "dead-run",
        {"controller": {"host": socket.gethostname(), "pid": 999999, "pid_start": "1"}},
    )
    assert reap_interrupted(ledger) == ["dead-run"]
    assert not (tmp_path / ".techops" / "runs" / "dead-run").exists()
    interrupted = [e for e in ledger.entries() if e.kind == "run.interrupted"]
    assert "never scrubbed" in interrupted[0].body["artifacts"]


def test_altered_event_detail_is_caught_by_verify(ledger, recorded_events, tmp_path):
    """The run's finished entry seals its stored events: editing one is named."""
    record(ledger, recorded_events, tmp_path)
    assert ledger.verify().ok
    with ledger.engine.connect().execution_options(techops_write=True) as conn, conn.begin():
        conn.execute(
            events.update()
            .where(events.c.counter == recorded_events[3]["counter"])
            .values(data='{"task":"nothing happened here"}')
        )
    result = ledger.verify()
    assert not result.ok
    assert "stored events of run" in result.problem.reason
    assert result.problem.seq == 2  # the run.finished entry that sealed them


def test_a_deleted_event_row_is_caught_by_verify(ledger, recorded_events, tmp_path):
    record(ledger, recorded_events, tmp_path)
    with ledger.engine.connect().execution_options(techops_write=True) as conn, conn.begin():
        conn.execute(events.delete().where(events.c.counter == recorded_events[-1]["counter"]))
    assert f"{len(recorded_events)} events sealed, {len(recorded_events) - 1} stored" in (
        ledger.verify().problem.reason
    )


@pytest.mark.parametrize(
    ("counters", "outcome"),
    [
        ({"ok": 3, "dark": 1}, "unreachable"),
        ({"ok": 3, "failures": 1}, "failed"),
        ({"ok": 3, "rescued": 1}, "rescued"),
        ({"ok": 3, "changed": 2}, "changed"),
        ({"ok": 3}, "ok"),
        ({"skipped": 4}, "skipped"),
    ],
)
def test_host_outcome(counters, outcome):
    assert host_outcome(counters) == outcome
