"""`techops schedule install --systemd`: timer and service units that fire the jobs at
the scheduler's instants, daylight-saving changes included."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from runner.core.paths import repo_root
from runner.scheduling.model import Job, Schedules, credential_name, maintenance

WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


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
            + _credentials(job.vault_ids, schedules)
            + f"ExecStart={techops_bin} run --schedule {job.name}\n"
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


def _credentials(labels: Iterable[str], schedules: Schedules) -> str:
    """LoadCredential= lines for vault identities: systemd copies each password file into
    the service's private credentials directory; the unit holds only the path."""
    return "".join(
        f"LoadCredential={credential_name(label)}:{schedules.vault_dir / label}\n"
        for label in sorted(set(labels))
    )


def scheduler_unit(techops_bin: str, schedules: Schedules) -> str:
    labels = [label for job in schedules.jobs.values() if job.enabled for label in job.vault_ids]
    return (
        "[Unit]\nDescription=techops scheduler (fires the jobs of schedules.yml)\n"
        "After=network-online.target\nWants=network-online.target\n\n[Service]\n"
        f"WorkingDirectory={repo_root()}\nEnvironment=TECHOPS_ROOT={repo_root()}\n"
        + _credentials(labels, schedules)
        + f"ExecStart={techops_bin} scheduler\n"
        "Restart=on-failure\nRestartSec=10\nKillSignal=SIGTERM\nTimeoutStopSec=600\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
