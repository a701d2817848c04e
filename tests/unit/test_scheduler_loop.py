"""The scheduler's loop under a controlled clock: clock jumps, restarts, bad reloads."""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from runner import scheduler
from tests.conftest import REPO

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
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "site.yml").write_text("---\n")
    (tmp_path / "schedules.yml").write_text(SCHEDULES)
    shutil.copytree(REPO / "plugins", tmp_path / "plugins")
    return tmp_path


def run_loop(state, clock, steps):
    """Start the loop, apply each step (a callable) after the loop has settled."""
    fired: list[tuple[str, datetime]] = []
    stop = threading.Event()

    def fire(job, when, _ledger):
        fired.append((job.name, when))

    thread = threading.Thread(
        target=scheduler.serve,
        kwargs={
            "stop": stop,
            "clock": clock,
            "fire": fire,
            "poll_s": 0.05,
            "schedules_path": state / "schedules.yml",
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
        monkeypatch.setattr(scheduler, "load", unreadable)
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
    lock = scheduler.SchedulerLock()
    lock.acquire()
    try:
        with pytest.raises(Exception, match="another scheduler is already active"):
            scheduler.SchedulerLock().acquire()
    finally:
        lock.release()
