from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from runner.execution.progress import Progress
from runner.execution.request import RunRequest, RunResult
from runner.ledger.redact import Redactor


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


def _hostile(events: list[dict]) -> list[dict]:
    """The recorded events, with task names and a failure message that carry terminal
    escape sequences (colour, clear screen, window title, a hyperlink) and controls."""
    hostile = []
    for event in events:
        data = dict(event.get("event_data") or {})
        if data.get("task"):
            data["task"] = "\x1b[2J\x1b[31mwipe\x1b[0m \x1b]0;owned\x07" + data["task"]
        if isinstance(data.get("res"), dict) and data["res"].get("msg"):
            data["res"] = {**data["res"], "msg": "\x1b]8;;http://x\x1b\\click\x1b]8;;\x1b\\\x08!"}
        hostile.append({**event, "event_data": data})
    return hostile


def test_text_from_tasks_cannot_drive_the_terminal(recorded_events):
    plain = replay(_hostile(recorded_events))
    assert "\x1b" not in plain and "\x07" not in plain and "\x08" not in plain
    assert "TASK [wipe Reach every host] 5/5 hosts" in plain
    assert "FAILED app2: click!" in plain
    # On a terminal, the only escape left is the progress line's own redraw.
    tty = replay(_hostile(recorded_events), tty=True)
    assert tty.replace("\r\x1b[K", "").count("\x1b") == 0


def test_a_secret_is_redacted_before_a_failure_message_is_cut_or_joined():
    """The display joins a message's lines and cuts it at 300 characters: done before
    redaction, that would print the pieces of a secret that straddles either."""
    secret = "CANARY-straddles-the-cut-4f1e"
    key = "CANARY-line-one-8c2a\nCANARY-line-two-9d3b"
    stream = io.StringIO()
    progress = Progress(stream, tty=False, redactor=Redactor({secret, key}))
    progress.on_start(RunRequest(playbook=Path("p.yml"), inventory="lab"))
    msg = "x" * 290 + " " + secret + "\nkey:\n  CANARY-line-one-8c2a\n  CANARY-line-two-9d3b"
    for event in (
        {"event": "playbook_on_task_start", "event_data": {"task": "t"}},
        {"event": "runner_on_start", "event_data": {"host": "h1"}},
        {"event": "runner_on_failed", "event_data": {"host": "h1", "res": {"msg": msg}}},
    ):
        progress.on_event(event)
    out = stream.getvalue()
    assert "CANARY" not in out
    assert "FAILED h1: " + "x" * 290 in out
