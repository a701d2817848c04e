"""Live progress of a run on the terminal: play, task, hosts done of total, failures."""

from __future__ import annotations

import re
import sys
import time
from typing import Any, TextIO

from runner.execution.request import RunRequest, RunResult
from runner.ledger.redact import Redactor

# Escape sequences (CSI, OSC and the rest) and control characters but the line break: text
# from tasks and hosts must not move the cursor, recolour, retitle or clear the terminal.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: cursor, colour, erase
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: title, hyperlinks, clipboard
    r"|\x1b[@-Z\\-_]"  # other two-character escapes
    r"|[\x00-\x09\x0b-\x1f\x7f-\x9f]"  # C0 (but the line break), DEL, C1
)


def printable(text: str) -> str:
    """Text as the terminal may show it: without escape sequences or control characters
    (a tab becomes a space)."""
    return _CONTROL.sub("", text.replace("\t", " "))


_DONE = {
    "runner_on_ok",
    "runner_on_failed",
    "runner_on_unreachable",
    "runner_on_skipped",
}


class Progress:
    """Prints one line per task as it completes (redrawn in place on a terminal)."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        *,
        tty: bool | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.stream = stream
        self.redactor = redactor or Redactor()
        self.tty = stream.isatty() if tty is None else tty
        self.task = ""
        self.total = 0
        self.done = 0
        self.changed = 0
        self.failed = 0
        self.task_started = 0.0
        self.line_open = False

    # Observer protocol ------------------------------------------------------------
    def on_start(self, request: RunRequest) -> None:
        mode = " (check mode)" if request.check else ""
        self._print(f"run {request.run_id}: {request.playbook.name} on {request.inventory}{mode}")

    def on_event(self, event: dict[str, Any]) -> None:
        # Before anything of this event is printed: a secret the task just returned.
        self.redactor.learn_from(event)
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_play_start":
            self._finish_task()
            self._print(f"PLAY [{data.get('play', '')}]")
        elif kind == "playbook_on_task_start":
            self._finish_task()
            self.task = data.get("task", "") or data.get("name", "")
            role = data.get("role")
            if role:
                self.task = f"{role} : {self.task}"
            self.total = self.done = self.changed = self.failed = 0
            self.task_started = time.monotonic()
        elif kind == "runner_on_start":
            self.total += 1
            self._draw()
        elif kind in _DONE and not data.get("loop_item_ignored"):
            self.done += 1
            res = data.get("res") or {}
            if res.get("changed"):
                self.changed += 1
            if kind in ("runner_on_failed", "runner_on_unreachable"):
                if kind == "runner_on_failed" and data.get("ignore_errors"):
                    pass
                else:
                    self.failed += 1
                    self._finish_line()
                    what = "UNREACHABLE" if kind == "runner_on_unreachable" else "FAILED"
                    self._print(f"  {what} {data.get('host')}: {_message(res, self.redactor)}")
            self._draw()
        elif kind == "playbook_on_stats":
            self._finish_task()

    def on_finish(self, result: RunResult) -> None:
        self._finish_task()
        if result.stats:
            self._print(_recap(result.stats))
        took = (result.finished - result.started).total_seconds()
        self._print(f"run {result.run_id}: {result.status} (rc {result.rc}) in {took:.1f} s")

    # Output -----------------------------------------------------------------------
    def _status(self) -> str:
        extra = []
        if self.changed:
            extra.append(f"{self.changed} changed")
        if self.failed:
            extra.append(f"{self.failed} failed")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"  TASK [{self.task}] {self.done}/{self.total} hosts{tail}"

    def _draw(self) -> None:
        if self.tty and self.task:
            self.stream.write("\r\033[K" + printable(self.redactor.text(self._status())))
            self.stream.flush()
            self.line_open = True

    def _finish_line(self) -> None:
        if self.line_open:
            self.stream.write("\r\033[K")
            self.line_open = False

    def _finish_task(self) -> None:
        if self.task and self.total:
            self._finish_line()
            took = time.monotonic() - self.task_started
            self._print(f"{self._status()} {took:.1f}s")
        self.task = ""
        self.total = 0

    def _print(self, text: str) -> None:
        self._finish_line()
        self.stream.write(printable(self.redactor.text(text)) + "\n")
        self.stream.flush()


def _message(res: dict[str, Any], redactor: Redactor) -> str:
    if res.get("_ansible_no_log"):
        return "(output hidden: no_log)"
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or "failed"
    # Redacted first: joining its lines and cutting it short would leave pieces of a
    # secret that the redactor no longer recognises.
    return " ".join(redactor.text(str(msg)).split())[:300]


def _recap(stats: dict[str, dict[str, int]]) -> str:
    columns = ["ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"]
    names = {"dark": "unreachable", "failures": "failed"}
    width = max(len(h) for h in stats)
    lines = ["RECAP"]
    for host in sorted(stats):
        counts = "  ".join(f"{names.get(c, c)}={stats[host].get(c, 0)}" for c in columns)
        lines.append(f"  {host.ljust(width)}  {counts}")
    return "\n".join(lines)
