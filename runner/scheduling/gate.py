"""The gate: may a scheduled job start now? One decision, whoever fires the job.

`techops scheduler` and the systemd timers from `techops schedule install` both call
`techops run --schedule NAME`, which asks the gate at fire time. Every decision (fired,
skipped, refused, and why) is appended to the ledger as a `schedule.decision` entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from runner.scheduling.model import Job, Schedules


@dataclass(frozen=True)
class Decision:
    action: str  # "fire", "skip" or "refuse"
    reason: str
    job: str
    scheduled_for: datetime | None
    override_reason: str | None = None
    window: dict[str, Any] = field(default_factory=dict)

    @property
    def fires(self) -> bool:
        return self.action == "fire"

    def as_record(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "action": self.action,
            "reason": self.reason,
            "scheduled_for": self.scheduled_for.isoformat() if self.scheduled_for else None,
            "override_reason": self.override_reason,
            "window": self.window,
        }


def decide(
    schedules: Schedules,
    job: Job,
    now: datetime,
    groups: set[str],
    *,
    scheduled_for: datetime | None = None,
    override_reason: str | None = None,
    running: str | None = None,
    already_fired: str | None = None,
) -> Decision:
    """Decide for one firing. `running` names a run of this job still in progress."""
    if now.tzinfo is None:
        raise ValueError("now must carry a timezone")
    if scheduled_for is None:
        scheduled_for = job.last_fire(now)

    def verdict(action: str, reason: str, status: dict | None = None) -> Decision:
        return Decision(action, reason, job.name, scheduled_for, override_reason, status or {})

    if not job.enabled:
        return verdict("skip", "the job is disabled in schedules.yml")
    if running:
        return verdict(
            "skip",
            f"the previous run {running} of this job is still running "
            "(a job never overlaps with itself)",
        )
    if already_fired:
        due = scheduled_for.isoformat() if scheduled_for else "?"
        return verdict(
            "skip",
            f"already fired for its start due at {due} (run "
            f"{already_fired}): a due time never fires twice",
        )
    if scheduled_for is not None and not override_reason:
        late = now - scheduled_for
        if late > job.misfire_grace:
            return verdict(
                "skip",
                f"missed: due at {scheduled_for.isoformat()}, "
                f"{human(late)} late, beyond the misfire grace of "
                f"{human(job.misfire_grace)}",
            )
    if not job.changes_hosts:
        return verdict("fire", "the job does not change hosts: windows and freezes do not apply")
    status = schedules.window_status(groups, now, job.window)
    if status["frozen"]:
        freeze = status["freeze"]
        if override_reason:
            return verdict(
                "fire",
                f"emergency override of freeze {freeze['name']!r}: {override_reason}",
                status,
            )
        return verdict(
            "refuse",
            f"change freeze {freeze['name']!r} until {freeze['end']}: {freeze['reason']}",
            status,
        )
    if not status["open"]:
        if override_reason:
            return verdict(
                "fire", f"emergency override of window {job.window!r}: {override_reason}", status
            )
        return verdict(
            "refuse", f"outside window {job.window!r} (next opens {status['next_open']})", status
        )
    return verdict("fire", f"inside window {job.window!r}", status)


def human(delta: timedelta) -> str:
    """A duration as the reasons give it: 2h05m, 30m or 45s."""
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else f"{seconds}s"
