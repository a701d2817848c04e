"""`techops scheduler`: the foreground service that fires scheduled jobs when due.

It fires through `techops run --schedule NAME`, as the systemd timers do (runner.scheduling
.units), so the gate decides at fire time either way.
The scheduler holds a lock so that only one instance is active; it re-reads
schedules.yml when it changes (keeping the last good version if the new one is invalid),
and on start fires, once, a job whose last due time it missed within the job's misfire
grace (the gate records anything later as skipped). After a clock jump forward it fires
the latest due time once and records the ones passed over as skipped. The timers fire at
the scheduler's instants, DST included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.core.errors import UserError
from runner.core.locks import FileLock
from runner.core.paths import repo_root, state_dir
from runner.ledger.store import Ledger, ledger_url
from runner.scheduling.gate import human
from runner.scheduling.jobs import record_skip
from runner.scheduling.model import Job, Schedules, default_path, load

POLL_S = 30.0


class SchedulerLock:
    """Only one scheduler is active on a controller."""

    def __init__(self, path: Path | None = None) -> None:
        self.lock = FileLock(path or state_dir() / "scheduler.lock")

    def acquire(self) -> None:
        holder = self.lock.acquire({"pid": os.getpid(), "host": os.uname().nodename})
        if holder is not None:
            who = (
                f"pid {holder['pid']} on {holder.get('host', '?')}"
                if "pid" in holder
                else "unknown"
            )
            raise UserError(f"another scheduler is already active ({who}): only one runs at a time")

    def release(self) -> None:
        self.lock.release()


def _fire(job: Job, due: datetime, ledger: str | None) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "runner.cli",
        "run",
        "--schedule",
        job.name,
        "--scheduled-for",
        due.isoformat(),
    ]
    if ledger:
        argv += ["--ledger", ledger]
    print(f"scheduler: firing {job.name} (due {due.isoformat()})", flush=True)
    return subprocess.Popen(argv, cwd=repo_root())


def serve(
    *,
    ledger: str | None = None,
    once: bool = False,
    stop: threading.Event | None = None,
    schedules_path: Path | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    fire: Callable[[Job, datetime, str | None], Any] | None = None,
    poll_s: float = POLL_S,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set). `once`: fire what is due, then return.

    `clock` and `fire` exist so that tests can drive time (DST changes, clock jumps) and
    see what would fire without starting runs.
    """
    fire = fire or _fire
    lock = SchedulerLock()
    lock.acquire()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    path = schedules_path or default_path()
    children: list[Any] = []
    try:
        schedules = load(path)
        mtime: float | None = path.stat().st_mtime
        print(f"scheduler: {len(schedules.jobs)} job(s) from {path}", flush=True)
        now = clock()
        # Catch up: each job's last due time, once; the gate applies the misfire grace
        # and never fires one due time twice.
        due: dict[str, datetime | None] = {}
        for job in schedules.jobs.values():
            if not job.enabled:
                continue
            last = job.last_fire(now)
            if last is not None and now - last <= max(job.misfire_grace, timedelta(hours=24)):
                children.append(fire(job, last, ledger))
            due[job.name] = job.recurrence.next_after(now)
        while not stop.is_set() and not once:
            current = _mtime(path)
            if current != mtime:
                mtime = current
                reloaded = _reload(path, clock())
                if reloaded is not None:
                    schedules, due = reloaded
            now = clock()
            for name, when in list(due.items()):
                if when is None or when > now or name not in schedules.jobs:
                    continue
                job = schedules.jobs[name]
                # After a clock jump forward several due times may have passed: fire the
                # latest once (the gate applies its grace), never a burst of them, and
                # record the others as skipped.
                passed: list[datetime] = []
                while (later := job.recurrence.next_after(when)) is not None and later <= now:
                    passed.append(when)
                    when = later
                if passed:
                    print(
                        f"scheduler: {name}: {len(passed)} earlier due time(s) passed while the "
                        "clock jumped; firing the latest once, recording the others as skipped",
                        flush=True,
                    )
                    _record_passed(job, passed, when, now, ledger)
                children.append(fire(job, when, ledger))
                due[name] = job.recurrence.next_after(when)
            children = [c for c in children if c is not None and c.poll() is None]
            upcoming = [w for w in due.values() if w is not None]
            wait = min([poll_s] + [(w - now).total_seconds() for w in upcoming])
            stop.wait(max(min(0.5, poll_s), wait))
    finally:
        for child in children:
            if child is not None:
                child.wait()
        lock.release()
    return 0


def _record_passed(
    job: Job, passed: list[datetime], latest: datetime, now: datetime, ledger: str | None
) -> None:
    """Record each due time a clock jump passed over as a skip decision, so that none is
    lost silently (one already decided, say by a timer, is not recorded again). A ledger
    that cannot be written is said, not raised: the service keeps running."""
    try:
        book = Ledger.open(ledger_url(ledger))
        try:
            recorded = sum(
                record_skip(book, job.name, due, _passed_reason(job, due, latest, now), now)
                is not None
                for due in passed
            )
        finally:
            book.close()
    except (UserError, OSError) as exc:
        print(
            f"scheduler: {job.name}: could not record the {len(passed)} passed due time(s): {exc}",
            flush=True,
        )
        return
    print(
        f"scheduler: {job.name}: recorded {recorded} passed due time(s) as skipped"
        + (f" ({len(passed) - recorded} already decided)" if recorded < len(passed) else ""),
        flush=True,
    )


def _passed_reason(job: Job, due: datetime, latest: datetime, now: datetime) -> str:
    """Why a due time passed over by a clock jump did not fire: how late it is and how far
    beyond the misfire grace, or, within the grace, that only the latest fires."""
    late = now.astimezone(UTC) - due.astimezone(UTC)
    grace = job.misfire_grace
    if late > grace:
        return (
            f"missed by a clock jump: due at {due.isoformat()}, {human(late)} late, "
            f"{human(late - grace)} beyond the misfire grace of {human(grace)}"
        )
    return (
        f"passed over by a clock jump: due at {due.isoformat()}, {human(late)} late, within "
        f"the misfire grace of {human(grace)}, but a job fires once after a jump: its "
        f"latest due time {latest.isoformat()} fires instead"
    )


def _mtime(path: Path) -> float | None:
    """The file's modification time; None while it is missing (an editor replacing it)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _reload(path: Path, now: datetime) -> tuple[Schedules, dict[str, datetime | None]] | None:
    """The changed file's schedules and their next due times, or None (said why) to keep
    the last good ones: whatever a malformed file raises, the service must keep running,
    not crash into a restart loop."""
    try:
        schedules = load(path)
        due = {n: j.recurrence.next_after(now) for n, j in schedules.jobs.items() if j.enabled}
    except UserError as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"unexpected {type(exc).__name__}: {exc}"
    else:
        print(f"scheduler: reloaded {path}", flush=True)
        return schedules, due
    print(f"scheduler: {path} is invalid, keeping the previous version: {reason}", flush=True)
    return None
