"""The recorder, fed the recorded events of a real run, writes the whole record."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.execution.request import RunRequest, RunResult
from runner.ledger import recorder as recorder_mod
from runner.ledger.recorder import Recorder, host_outcome, open_runs, reap_interrupted
from runner.ledger.store import Ledger, RunAlreadyEnded, event_row_hash, events, events_digest
from tests.ledgers import forge


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


def test_a_run_tells_ansible_playbook_where_it_is_recorded(ledger, tmp_path, monkeypatch):
    """So that the ledger callback finds the run open there and does not record it again;
    a run through techops is not marked unwrapped."""
    request = RunRequest(playbook=Path("site.yml"), inventory="h1,")
    Recorder(ledger).on_start(request)
    assert request.ledger_url == recorder_mod.absolute_url(ledger.url)
    assert next(ledger.entries()).body["unwrapped"] is False
    # ansible-playbook runs in the project directory: a relative SQLite path is made whole.
    monkeypatch.chdir(tmp_path)
    assert recorder_mod.absolute_url("sqlite:///l.sqlite3") == f"sqlite:///{tmp_path}/l.sqlite3"
    for unchanged in (
        "sqlite:////srv/l.sqlite3",
        "sqlite:///:memory:",
        "postgresql://techops:secret@db/techops",
        "not a url",
    ):
        assert recorder_mod.absolute_url(unchanged) == unchanged


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


def write(ledger: Ledger, statement) -> None:
    with ledger.engine.connect().execution_options(techops_write=True) as conn, conn.begin():
        conn.execute(statement)


def seal_of_what_is_stored(ledger: Ledger, run_id: str) -> dict:
    query = sa.select(events).where(events.c.run_id == run_id)
    with ledger.engine.connect() as conn:
        rows = list(conn.execute(query))
    hashes = [(r.counter, event_row_hash(r.counter, r.event, r.host, r.data)) for r in rows]
    return {"count": len(hashes), "sha256": events_digest(hashes)}


@pytest.mark.parametrize(
    ("kind", "run_of_its_own"),
    [
        ("schedule.notified", False),  # any later entry, of any kind, naming the run
        ("run.started", False),
        ("run.finished", True),  # a second end of the same run
        ("run.interrupted", True),
    ],
)
def test_deleted_failures_cannot_be_resealed_by_a_later_entry(
    ledger, recorded_events, tmp_path, kind, run_of_its_own
):
    """The attack: delete an old run's failed-task event rows, then append a later entry
    carrying a fresh digest of what remains. The run's own first terminal entry alone
    seals its events, so the later entry is named."""
    record(ledger, recorded_events, tmp_path)
    run_id = next(ledger.entries()).run_id
    record(ledger, recorded_events[:5], tmp_path)  # later runs, as in a real ledger
    failed = events.c.event == "runner_on_failed"
    write(ledger, events.delete().where(events.c.run_id == run_id).where(failed))
    assert not any(e["event"] == "runner_on_failed" for e in ledger.run_events(run_id))
    body = {"run_id": run_id, "events": seal_of_what_is_stored(ledger, run_id)}
    if run_of_its_own:
        body["status"] = "successful"
    seq = forge(ledger, kind, run_id, body)
    result = ledger.verify()
    assert not result.ok
    assert result.problem.seq == seq
    assert f"entry {seq} ({kind}) tries to re-seal the events of run {run_id}" in (
        result.problem.reason
    )


def test_a_second_end_of_a_run_is_named_even_without_a_seal(ledger, recorded_events, tmp_path):
    record(ledger, recorded_events, tmp_path)
    run_id = next(ledger.entries()).run_id
    seq = forge(ledger, "run.finished", run_id, {"run_id": run_id, "status": "successful"})
    reason = ledger.verify().problem.reason
    assert f"entry {seq} (run.finished) ends run {run_id} a second time: entry 2" in reason


def test_the_ledger_refuses_to_write_a_second_end_or_a_stray_seal(ledger):
    ledger.append("run.started", "r1", {})
    ledger.append("run.finished", "r1", {"status": "successful"})
    with pytest.raises(RunAlreadyEnded, match="run r1 already ended at ledger entry 2"):
        ledger.append("run.interrupted", "r1", {"status": "interrupted"})
    with pytest.raises(ValueError, match="only a run's terminal entry"):
        ledger.append("schedule.notified", "r1", {"events": {"count": 0, "sha256": ""}})
    assert [e.kind for e in ledger.entries()] == ["run.started", "run.finished"]
    assert ledger.verify().ok


def dead_run(ledger: Ledger, run_id: str, stored: int) -> None:
    rows = [
        {"run_id": run_id, "counter": i, "event": "runner_on_ok", "host": "h", "data": "{}"}
        for i in range(1, stored + 1)
    ]
    ledger.append(
        "run.started",
        run_id,
        {"controller": {"host": socket.gethostname(), "pid": 999999, "pid_start": "1"}},
        event_rows=rows,
    )


def test_the_reaper_seals_the_events_a_dead_run_stored(ledger):
    dead_run(ledger, "dead-run", stored=3)
    assert reap_interrupted(ledger) == ["dead-run"]
    (interrupted,) = ledger.entries(kinds=["run.interrupted"])
    assert interrupted.body["events"]["count"] == 3
    assert ledger.verify().ok
    write(ledger, events.delete().where(events.c.counter == 2))
    problem = ledger.verify().problem
    assert problem.seq == interrupted.seq
    assert "stored events of run dead-run were altered" in problem.reason


def test_the_reaper_leaves_a_run_that_ended_while_it_looked(ledger, tmp_path, monkeypatch):
    """The run wrote its own end, then exited, between the reaper's listing and its
    append: the run's end stands, and its kept artifacts stay."""
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    kept = tmp_path / ".techops" / "runs" / "done-run"
    kept.mkdir(parents=True)
    dead_run(ledger, "done-run", stored=1)
    listed = open_runs(ledger)
    ledger.append("run.finished", "done-run", {"status": "successful"})
    monkeypatch.setattr(recorder_mod, "open_runs", lambda _ledger: listed)
    assert reap_interrupted(ledger) == []
    assert [e.kind for e in ledger.entries()] == ["run.started", "run.finished"]
    assert kept.is_dir()
    assert ledger.verify().ok


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
