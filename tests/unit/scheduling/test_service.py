"""The scheduler's loop under a controlled clock: clock jumps, restarts, bad reloads."""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from runner.ledger.store import Ledger
from runner.scheduling import jobs, service
from tests.helpers import REPO

SCHEDULES = """\
timezone: UTC
windows:
  - {name: always, cron: "* * * * *", duration: 2h}
jobs:
  - {name: hourly, playbook: playbooks/site.yml, cron: "0 * * * *", window: always}
"""


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("TECHOPS_ROOT", str(tmp_path))
    monkeypatch.delenv("TECHOPS_LEDGER", raising=False)
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "site.yml").write_text("---\n")
    (tmp_path / "schedules.yml").write_text(SCHEDULES)
    shutil.copytree(REPO / "plugins", tmp_path / "plugins")
    return tmp_path


def run_loop(state, clock, steps, ledger=None):
    """Start the loop, apply each step (a callable) after the loop has settled."""
    fired: list[tuple[str, datetime]] = []
    stop = threading.Event()

    def fire(job, when, _ledger):
        fired.append((job.name, when))

    thread = threading.Thread(
        target=service.serve,
        kwargs={
            "stop": stop,
            "clock": clock,
            "fire": fire,
            "poll_s": 0.05,
            "schedules_path": state / "schedules.yml",
            "ledger": ledger,
        },
        daemon=True,
    )
    thread.start()
    time.sleep(0.3)
    for step in steps:
        step()
        time.sleep(0.3)
    stop.set()
    thread.join(5)
    return fired


def test_a_clock_jump_forward_fires_the_latest_due_time_once(state):
    clock = Clock(datetime(2026, 11, 22, 10, 30, tzinfo=UTC))
    fired = run_loop(state, clock, [lambda: setattr(clock, "now", clock.now + timedelta(hours=5))])
    # At start: the catch-up of 10:00. After the jump to 15:30: 15:00 only, not 11:00-15:00.
    assert fired == [
        ("hourly", datetime(2026, 11, 22, 10, 0, tzinfo=UTC)),
        ("hourly", datetime(2026, 11, 22, 15, 0, tzinfo=UTC)),
    ]


def skips(url: str) -> list[dict]:
    ledger = Ledger.open(url)
    try:
        return [e.body for e in ledger.entries(kinds=[jobs.DECISION])]
    finally:
        ledger.close()


def test_a_clock_jump_forward_records_each_passed_due_time_as_skipped(state, capsys):
    url = f"sqlite:///{state / 'jump.sqlite3'}"
    clock = Clock(datetime(2026, 11, 22, 10, 30, tzinfo=UTC))
    fired = run_loop(
        state, clock, [lambda: setattr(clock, "now", clock.now + timedelta(hours=5))], url
    )
    assert [when.hour for _, when in fired] == [10, 15]  # still one run after the jump
    records = skips(url)
    assert [r["scheduled_for"] for r in records] == [
        f"2026-11-22T{hour}:00:00+00:00" for hour in (11, 12, 13, 14)
    ]
    assert {r["action"] for r in records} == {"skip"}
    assert {r["run_id"] for r in records} == {None}
    assert records[0]["reason"] == (
        "missed by a clock jump: due at 2026-11-22T11:00:00+00:00, 4h30m late, "
        "4h15m beyond the misfire grace of 15m"
    )
    assert "recorded 4 passed due time(s) as skipped" in capsys.readouterr().out


def test_due_times_a_jump_passes_within_the_grace_are_skipped_not_fired(state):
    (state / "schedules.yml").write_text(
        SCHEDULES.replace('"0 * * * *"', '"*/5 * * * *"').replace("}\n", ", misfire_grace: 30m}\n")
    )
    url = f"sqlite:///{state / 'jump.sqlite3'}"
    clock = Clock(datetime(2026, 11, 22, 10, 1, tzinfo=UTC))
    fired = run_loop(
        state,
        clock,
        [lambda: setattr(clock, "now", datetime(2026, 11, 22, 10, 17, tzinfo=UTC))],
        url,
    )
    assert [when.minute for _, when in fired] == [0, 15]
    records = skips(url)
    assert [r["scheduled_for"][11:16] for r in records] == ["10:05", "10:10"]
    assert "within the misfire grace of 30m" in records[0]["reason"]
    assert "latest due time 2026-11-22T10:15:00+00:00 fires instead" in records[0]["reason"]


def test_a_passed_due_time_already_decided_is_not_recorded_again(state):
    url = f"sqlite:///{state / 'jump.sqlite3'}"
    job = service.load(state / "schedules.yml").jobs["hourly"]
    due = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
    now = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
    service._record_passed(job, [due], due, now, url)
    service._record_passed(job, [due, due + timedelta(hours=1)], due, now, url)
    assert [r["scheduled_for"][11:13] for r in skips(url)] == ["11", "12"]


def test_a_ledger_that_cannot_be_written_does_not_stop_the_loop(state, capsys):
    clock = Clock(datetime(2026, 11, 22, 10, 30, tzinfo=UTC))
    fired = run_loop(
        state,
        clock,
        [lambda: setattr(clock, "now", clock.now + timedelta(hours=3))],
        "mysql://nowhere/ledger",
    )
    assert [when.hour for _, when in fired] == [10, 13]
    assert "could not record the 2 passed due time(s): unsupported ledger URL" in (
        capsys.readouterr().out
    )


def test_a_clock_jump_backward_fires_nothing_again(state):
    clock = Clock(datetime(2026, 11, 22, 10, 30, tzinfo=UTC))
    fired = run_loop(
        state,
        clock,
        [
            lambda: setattr(clock, "now", datetime(2026, 11, 22, 11, 0, 1, tzinfo=UTC)),
            lambda: setattr(clock, "now", datetime(2026, 11, 22, 10, 10, tzinfo=UTC)),
            lambda: setattr(clock, "now", datetime(2026, 11, 22, 11, 30, tzinfo=UTC)),
        ],
    )
    assert [when.hour for _, when in fired] == [10, 11]


def test_an_invalid_reload_keeps_the_last_good_schedules(state, capsys):
    clock = Clock(datetime(2026, 11, 22, 10, 30, tzinfo=UTC))

    def break_file():
        (state / "schedules.yml").write_text(SCHEDULES.replace('"0 * * * *"', '"0 25 * * *"'))

    fired = run_loop(
        state,
        clock,
        [break_file, lambda: setattr(clock, "now", datetime(2026, 11, 22, 11, 0, 5, tzinfo=UTC))],
    )
    assert "is invalid, keeping the previous version" in capsys.readouterr().out
    assert [when.hour for _, when in fired] == [10, 11]  # the old schedule still fires


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"0 * * * *"', '"0 2 30 2 *"'),  # croniter: CroniterBadDateError
        ("jobs:", "freezes:\n  - {start: 2026-13-01, end: 2027-01-01, reason: x}\njobs:"),
        ("jobs:", "notify: [failure]\njobs:"),
    ],
)
def test_a_reload_that_once_crashed_the_loader_keeps_the_last_good_schedules(
    state, capsys, old, new
):
    clock = Clock(datetime(2026, 11, 22, 10, 30, tzinfo=UTC))

    def break_file():
        (state / "schedules.yml").write_text(SCHEDULES.replace(old, new))

    fired = run_loop(
        state,
        clock,
        [break_file, lambda: setattr(clock, "now", datetime(2026, 11, 22, 11, 0, 5, tzinfo=UTC))],
    )
    out = capsys.readouterr().out
    assert "is invalid, keeping the previous version: " in out
    assert "schedules.yml:" in out.split("keeping the previous version: ", 1)[1]
    assert [when.hour for _, when in fired] == [10, 11]


def test_any_exception_on_reload_keeps_the_last_good_schedules(state, capsys, monkeypatch):
    clock = Clock(datetime(2026, 11, 22, 10, 30, tzinfo=UTC))
    path = state / "schedules.yml"

    def unreadable(_path):
        raise RuntimeError("something no one foresaw")

    def change_file_and_break_loading():
        monkeypatch.setattr(service, "load", unreadable)
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))

    def remove_file():
        path.unlink()

    fired = run_loop(
        state,
        clock,
        [
            change_file_and_break_loading,
            remove_file,
            lambda: setattr(clock, "now", datetime(2026, 11, 22, 11, 0, 5, tzinfo=UTC)),
        ],
    )
    out = capsys.readouterr().out
    assert (
        "is invalid, keeping the previous version: unexpected RuntimeError: "
        "something no one foresaw" in out
    )
    assert [when.hour for _, when in fired] == [10, 11]  # still running, the old schedule


def test_a_second_scheduler_is_refused(state):
    lock = service.SchedulerLock()
    lock.acquire()
    try:
        with pytest.raises(Exception, match="another scheduler is already active"):
            service.SchedulerLock().acquire()
    finally:
        lock.release()


# ------------------------------------------------------------------ one decision per due time

REPORT = """\
timezone: Europe/Paris
jobs:
  - name: report
    playbook: playbooks/site.yml
    inventory: "localhost,"
    cron: "30 2 * * *"
    changes_hosts: false
    notify: {on: [skip, refuse], webhook: "https://chat.example.com/hooks/techops"}
"""
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def report(state, monkeypatch):
    """The `report` job, its ledger, and the notifications it would send."""
    (state / "schedules.yml").write_text(REPORT)
    sent: list[tuple[str, dict]] = []

    def send(_config, event, payload):
        sent.append((event, payload))
        return [{"to": "webhook", "ok": True}]

    monkeypatch.setattr("runner.scheduling.notify.send", send)

    def run_recorded(*_args, **_kwargs):
        raise AssertionError("the job would have run")

    monkeypatch.setattr(jobs, "run_recorded", run_recorded)
    ledger = Ledger.open(f"sqlite:///{state / 'ledger.sqlite3'}")
    yield ledger, sent
    ledger.close()


def run_report(ledger, state, due, now):
    return jobs.run_job(
        "report",
        ledger=ledger,
        now=now,
        scheduled_for=due,
        schedules_path=state / "schedules.yml",
    )


def test_a_second_skip_for_the_same_due_time_is_neither_recorded_nor_notified(
    state, report, capsys
):
    ledger, sent = report
    due = datetime(2026, 11, 24, 2, 30, tzinfo=PARIS)
    late = due + timedelta(hours=2)
    assert run_report(ledger, state, due, late) == 0  # missed beyond the grace: a skip
    first = list(ledger.entries(kinds=[jobs.DECISION]))
    assert [e.body["action"] for e in first] == ["skip"]
    # A scheduler restart asks again for the same due time (here given as UTC).
    assert run_report(ledger, state, due.astimezone(UTC), late + timedelta(minutes=5)) == 0
    assert len(list(ledger.entries(kinds=[jobs.DECISION]))) == 1
    assert [event for event, _ in sent] == ["skip"]
    out = capsys.readouterr().out
    assert (
        "techops: job report: its start due at 2026-11-24T01:30:00+00:00 was already decided "
        f"(skip in ledger entry {first[0].seq}, at {late.isoformat()}): nothing recorded again"
    ) in out


@pytest.mark.parametrize("action", ["fire", "skip", "refuse"])
def test_a_skip_after_any_decision_for_that_due_time_stays_quiet(state, report, capsys, action):
    ledger, sent = report
    # 02:30 does not exist on 29 March 2026 in Paris: the scheduler fires it at 03:30
    # CEST, and a timer (no --scheduled-for) finds the same due time written differently.
    due = datetime(2026, 3, 29, 2, 30, tzinfo=PARIS)
    ledger.append(
        jobs.DECISION,
        "job:report",
        {
            "job": "report",
            "action": action,
            "scheduled_for": "2026-03-29T03:30:00+02:00",
            "run_id": "run-7" if action == "fire" else None,
            "decided_at": "2026-03-29T01:30:05+00:00",
        },
    )
    now = datetime(2026, 3, 29, 1, 31, tzinfo=UTC) + (
        timedelta(hours=1) if action != "fire" else timedelta(0)
    )
    assert (
        jobs.run_job("report", ledger=ledger, now=now, schedules_path=state / "schedules.yml") == 0
    )
    assert len(list(ledger.entries(kinds=[jobs.DECISION]))) == 1
    assert sent == []
    out = capsys.readouterr().out
    assert (
        f"its start due at {due.isoformat()} was already decided ({action} in ledger entry 1" in out
    )
    if action == "fire":
        assert "run run-7" in out


def test_another_due_time_is_still_decided_and_recorded(state, report):
    ledger, sent = report
    due = datetime(2026, 11, 24, 2, 30, tzinfo=PARIS)
    run_report(ledger, state, due, due + timedelta(hours=2))
    run_report(ledger, state, due + timedelta(days=1), due + timedelta(days=1, hours=2))
    assert [e.body["scheduled_for"][:10] for e in ledger.entries(kinds=[jobs.DECISION])] == [
        "2026-11-24",
        "2026-11-25",
    ]
    assert len(sent) == 2
