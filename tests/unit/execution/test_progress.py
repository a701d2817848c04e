from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from runner.execution.progress import Progress
from runner.execution.request import RunRequest, RunResult


def replay(events, *, tty=False) -> str:
    stream = io.StringIO()
    progress = Progress(stream, tty=tty)
    progress.on_start(RunRequest(playbook=Path("mixed_outcomes.yml"), inventory="lab"))
    for event in events:
        progress.on_event(event)
    stats = {"app2": {"ok": 4, "failures": 1}, "app1": {"ok": 4, "changed": 1}}
    now = datetime.now(UTC)
    progress.on_finish(RunResult("id", "failed", 2, stats, None, now, now))
    return stream.getvalue()


def test_progress_shows_play_tasks_and_hosts_done_of_total(recorded_events):
    out = replay(recorded_events)
    assert "PLAY [Mixed outcomes]" in out
    assert "TASK [Reach every host] 5/5 hosts" in out
    assert "TASK [Change something on app1 only] 5/5 hosts (1 changed)" in out
    assert "TASK [Rescue it] 1/1 hosts" in out


def test_progress_names_each_failed_host_with_its_message(recorded_events):
    out = replay(recorded_events)
    assert "FAILED app2: planned failure on app2" in out
    assert "failed (rc 2)" in out
    assert "app2  ok=4  changed=0  failed=1" in out


def test_progress_never_prints_no_log_values(recorded_events):
    assert "CANARY" not in replay(recorded_events)


def test_terminal_output_redraws_in_place(recorded_events):
    out = replay(recorded_events, tty=True)
    assert "\r\033[K" in out
