"""Firing scheduled jobs: `techops scheduler` (a foreground service) and systemd timers.

Both end in `techops run --schedule NAME`, so the gate decides at fire time either way.
The scheduler holds a lock so that only one instance is active; it re-reads
schedules.yml when it changes (keeping the last good version if the new one is invalid),
and on start fires, once, a job whose last due time it missed within the job's misfire
grace (the gate records anything later as skipped). After a clock jump forward it fires
the latest due time once and records the ones passed over as skipped. The timers fire at
the scheduler's instants, DST included (see `render_units`).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.gate import human
from runner.paths import repo_root, state_dir
from runner.schedule import Job, Schedules, default_path, load, maintenance

POLL_S = 30.0

WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


class SchedulerLock:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "scheduler.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"another scheduler is already active ({holder}): only one runs at a time"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


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
        mtime = path.stat().st_mtime
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
    from runner.launch import ledger_url, record_skip
    from runner.ledger import Ledger

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


# ---------------------------------------------------------------------- listing


def describe(
    schedules: Schedules, count: int = 3, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Each job's next `count` start times, with what the gate would say about them.

    The gate applies windows and freezes only to jobs that change hosts, and a freeze only
    when its groups cover a group of the hosts the job touches. Those groups come from the
    inventory, which listing does not read: a freeze is `frozen_by` when it covers `all`
    or a group the job's limit names, and `may_be_frozen_by` when only the inventory can
    tell (the job has no limit, or its hosts may also be in the freeze's groups).
    """
    now = now or datetime.now(UTC)
    rows = []
    for job in schedules.jobs.values():
        named = limit_groups(job.limit) | {"all"}
        gated = job.changes_hosts
        fires = []
        for when in job.next_fires(now, count):
            status = (
                schedules.window_status({"all"}, when, job.window) if gated and job.window else None
            )
            current = [
                f
                for f in schedules.freezes
                if gated
                and f.start.astimezone(UTC) <= when.astimezone(UTC) <= f.end.astimezone(UTC)
            ]
            fires.append(
                {
                    "local": when.isoformat(),
                    "utc": when.astimezone(UTC).isoformat(),
                    "in_window": status["open"] if status else None,
                    "frozen_by": [f.name for f in current if f.applies(named)],
                    "may_be_frozen_by": [f.name for f in current if not f.applies(named)],
                }
            )
        rows.append(
            {
                "job": job.name,
                "playbook": job.playbook,
                "inventory": job.inventory,
                "enabled": job.enabled,
                "window": job.window,
                "timezone": str(job.tz),
                "changes_hosts": job.changes_hosts,
                "next": fires,
            }
        )
    return rows


def limit_groups(limit: str | None) -> set[str]:
    """The names an Ansible limit selects hosts by (`app`, `dr_standby:backup_server`,
    `app:&eu`), without its exclusions (`!app1`): every host the job touches is in all
    `&` terms and in one of the others, so a freeze on such a group does apply. Names
    that are host names or patterns simply match no freeze group."""
    names: set[str] = set()
    for term in (limit or "").replace(",", ":").split(":"):
        term = term.strip()
        if term and not term.startswith("!"):
            names.add(term.removeprefix("&"))
    return names


def format_listing(rows: list[dict[str, Any]], schedules: Schedules) -> str:
    lines = []
    for row in rows:
        state = "" if row["enabled"] else " (disabled)"
        lines.append(
            f"{row['job']}{state}: {row['playbook']} on {row['inventory']}, "
            f"window {row['window'] or 'none'} ({row['timezone']})"
        )
        for fire in row["next"]:
            notes = []
            if fire["in_window"] is False:
                notes.append("OUTSIDE its window: the gate will refuse")
            if fire["frozen_by"]:
                notes.append(f"frozen by {', '.join(fire['frozen_by'])}")
            if fire["may_be_frozen_by"]:
                notes.append(
                    f"frozen by {', '.join(fire['may_be_frozen_by'])} if it touches hosts "
                    "in their groups"
                )
            suffix = f"  [{'; '.join(notes)}]" if notes else ""
            lines.append(f"    {fire['local']}  ({fire['utc'][:16].replace('T', ' ')} UTC){suffix}")
    if schedules.freezes:
        lines.append("freezes:")
        for f in schedules.freezes:
            lines.append(
                f"    {f.name}: {f.start.isoformat()} to {f.end.isoformat()}, "
                f"groups {', '.join(f.groups)}: {f.reason}"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------- systemd


def cron_to_oncalendar(expression: str, tz: str) -> str | None:
    """A systemd OnCalendar= for a 5-field cron expression, or None if cron's meaning
    cannot be kept (cron ORs day-of-month and day-of-week when both are restricted;
    systemd ANDs them)."""
    minute, hour, dom, month, dow = expression.split()
    if dom != "*" and dow != "*":
        return None

    def field(value: str, names: list[str] | None = None) -> str:
        parts = []
        for part in value.split(","):
            step = ""
            if "/" in part:
                part, step_value = part.split("/", 1)
                step = f"/{step_value}"
                if part == "*":
                    part = "0" if names is None else part
            if names is not None:
                if step:
                    return ""  # a stepped weekday has no OnCalendar form
                if "-" in part:
                    a, b = (int(x) for x in part.split("-"))
                    parts.append(f"{names[a]}..{names[b]}")
                else:
                    parts.append(names[int(part)] if part != "*" else "*")
            else:
                parts.append(part.replace("-", "..") + step)
        return ",".join(parts)

    days = "" if dow == "*" else field(dow, WEEKDAYS)
    if dow != "*" and not days:
        return None
    date = f"*-{field(month) if month != '*' else '*'}-{field(dom) if dom != '*' else '*'}"
    time_part = f"{field(hour)}:{field(minute)}:00"
    return " ".join(p for p in (days, date, time_part, tz) if p)


# Cron jobs' timers carry the DST starts systemd would miss up to this far ahead.
DST_HORIZON_DAYS = 3 * 365


def dst_fires(job: Job, now: datetime, horizon_days: int = DST_HORIZON_DAYS) -> list[datetime]:
    """The starts `techops scheduler` fires within the horizon that the job's plain
    OnCalendar= would not: those whose local time a spring-forward skips (02:30 on such a
    night fires at 03:30 new time; systemd does not fire a time that does not exist),
    unless another start of the job falls on that same instant (03:00 and a skipped 02:00
    are one instant). A repeated local time needs nothing: systemd fires its first
    occurrence only, as the scheduler does."""
    rec = job.recurrence
    extra: dict[datetime, datetime] = {}
    for fire in rec.skipped_starts(now, now + timedelta(days=horizon_days)):
        instant = fire.astimezone(UTC)
        # Via UTC: astimezone() to the zone the time already carries changes nothing.
        wall = instant.astimezone(rec.tz).replace(tzinfo=None)
        if instant > now and not rec.wall_starts(wall, wall + timedelta(seconds=1)):
            extra.setdefault(instant, fire)
    return sorted(extra.values(), key=lambda f: f.astimezone(UTC))


def _dst_note(job: Job, extra: list[datetime], now: datetime, horizon_days: int) -> str:
    """The timer's comment on its DST lines: how many, and until when they were computed
    (nothing for a zone without daylight saving)."""
    end = now + timedelta(days=horizon_days)
    if not extra and not maintenance().gaps(job.tz, now, end):
        return ""
    if not extra:
        return (
            f"# Daylight saving: checked up to {end.date()}, no start falls in an hour that a\n"
            "# spring-forward skips (re-run `techops schedule install --systemd` before then).\n"
        )
    return (
        "# Daylight saving: systemd does not fire a local time that a spring-forward skips.\n"
        f"# The {len(extra)} UTC line(s) after the first fire those starts as `techops "
        f"scheduler` does;\n# computed up to {end.date()}: re-run `techops schedule install "
        "--systemd` before then.\n"
    )


def _utc_calendar(moment: datetime) -> str:
    """An OnCalendar= for one instant, in UTC (no local time is ambiguous in UTC)."""
    return f"OnCalendar={moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def render_units(
    schedules: Schedules,
    techops_bin: str,
    horizon_days: int = 366,
    *,
    dst_horizon_days: int = DST_HORIZON_DAYS,
    now: datetime | None = None,
) -> dict[str, str]:
    """Timer and service units, one pair per enabled job.

    A timer fires when `techops scheduler` would: a cron job's OnCalendar= gets extra
    UTC lines for its starts in skipped DST hours over `dst_horizon_days`; a recurrence
    with no OnCalendar form lists its start times, in UTC, over `horizon_days`. Either
    way the timer says until when, and install must be re-run before then.
    """
    root = repo_root()
    now = now or datetime.now(UTC)
    units: dict[str, str] = {}
    for job in schedules.jobs.values():
        if not job.enabled:
            continue
        unit = f"techops-job-{job.name}"
        calendar = (
            cron_to_oncalendar(job.recurrence.expression, str(job.tz))
            if job.recurrence.kind == "cron"
            else None
        )
        if calendar:
            extra = dst_fires(job, now, dst_horizon_days)
            on_calendar = [f"OnCalendar={calendar}"] + [_utc_calendar(f) for f in extra]
            note = _dst_note(job, extra, now, dst_horizon_days)
        else:
            fires = []
            moment = now
            while (nxt := job.recurrence.next_after(moment)) is not None and (
                nxt - now <= timedelta(days=horizon_days)
            ):
                fires.append(nxt)
                moment = nxt
            on_calendar = [_utc_calendar(f) for f in fires]
            note = (
                f"# This recurrence has no OnCalendar form: its next {len(fires)} start times\n"
                f"# (to {fires[-1].date() if fires else '-'}) are listed. Re-run "
                "`techops schedule install --systemd` before then.\n"
            )
        units[f"{unit}.service"] = (
            f"[Unit]\nDescription=techops scheduled job {job.name} ({job.playbook})\n"
            "After=network-online.target\nWants=network-online.target\n\n"
            f"[Service]\nType=oneshot\nWorkingDirectory={root}\n"
            f"Environment=TECHOPS_ROOT={root}\n"
            f"ExecStart={techops_bin} run --schedule {job.name}\n"
            # The gate decides; a refusal (exit 3) is a decision, not a unit failure.
            "SuccessExitStatus=3\n"
        )
        units[f"{unit}.timer"] = (
            f"[Unit]\nDescription=When techops job {job.name} fires\n\n[Timer]\n{note}"
            + "\n".join(on_calendar)
            + "\n# A missed start (machine off) fires at boot; the gate applies the misfire "
            "grace.\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
        )
    return units


def scheduler_unit(techops_bin: str) -> str:
    return (
        "[Unit]\nDescription=techops scheduler (fires the jobs of schedules.yml)\n"
        "After=network-online.target\nWants=network-online.target\n\n[Service]\n"
        f"WorkingDirectory={repo_root()}\nEnvironment=TECHOPS_ROOT={repo_root()}\n"
        f"ExecStart={techops_bin} scheduler\n"
        "Restart=on-failure\nRestartSec=10\nKillSignal=SIGTERM\nTimeoutStopSec=600\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, sort_keys=True)
