"""`techops schedule list`: each job's next starts and what the gate would say of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from runner.scheduling.model import Schedules


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


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, sort_keys=True)
