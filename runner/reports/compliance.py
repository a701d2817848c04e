"""The compliance report: per host, the last patch, backup freshness, the last drill and
the failed runs since a date."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runner.ledger.store import Ledger
from runner.reports.model import load_runs, verification
from runner.reports.render import html, to_csv, to_json


def compliance(ledger: Ledger, since: str) -> dict[str, Any]:
    """Per host: last successful patch, backup freshness, last drill, failed runs since."""
    runs = sorted(load_runs(ledger).values(), key=lambda r: r.start_time)
    hosts: dict[str, dict[str, Any]] = {}

    def row(host: str) -> dict[str, Any]:
        return hosts.setdefault(
            host,
            {
                "host": host,
                "last_patch": None,
                "pending_security_updates": None,
                "last_backup": None,
                "last_drill": None,
                "drill_rto_s": None,
                "drill_rto_target_s": None,
                "drill_rpo_s": None,
                "drill_rpo_target_s": None,
                "drill_passed": None,
                "failed_runs": [],
            },
        )

    for run in runs:
        if run.end is None:
            continue
        evidence = run.end.body.get("evidence") or {}
        for host, result in run.hosts.items():
            entry = row(host)
            ok = result.get("outcome") in ("ok", "changed", "rescued", "skipped")
            found = evidence.get(host) or {}
            if ok and "patch" in found and not run.started.body.get("check"):
                entry["last_patch"] = run.end_time
                entry["pending_security_updates"] = (found["patch"] or {}).get(
                    "security_pending_after"
                )
            if "backup" in found:
                entry["last_backup"] = (found["backup"] or {}).get("archive_time") or run.end_time
            if "drill" in found:
                drill = found["drill"] or {}
                entry["last_drill"] = run.end_time
                entry["drill_rto_s"] = drill.get("rto_s")
                entry["drill_rto_target_s"] = drill.get("rto_target_s")
                entry["drill_rpo_s"] = drill.get("rpo_s")
                entry["drill_rpo_target_s"] = drill.get("rpo_target_s")
                entry["drill_passed"] = drill.get("passed")
            if not ok and run.start_time >= since:
                entry["failed_runs"].append(run.run_id)
        # A run that never reached its end (canceled, timed out, killed, an error) has no
        # per-host outcome: it counts against every host it had locked.
        if run.status not in ("successful", "failed") and run.start_time >= since:
            for host in run.started.body.get("hosts") or []:
                if run.run_id not in row(host)["failed_runs"]:
                    row(host)["failed_runs"].append(run.run_id)
    now = datetime.now(UTC)
    for entry in hosts.values():
        entry["days_since_patch"] = _days(entry["last_patch"], now)
        entry["backup_age_hours"] = _hours(entry["last_backup"], now)
    return {
        "since": since,
        "generated": now.isoformat(timespec="seconds"),
        "hosts": [hosts[h] for h in sorted(hosts)],
        "ledger": verification(ledger.verify()),
    }


def _days(when: str | None, now: datetime) -> float | None:
    return round((now - datetime.fromisoformat(when)).total_seconds() / 86400, 1) if when else None


def _hours(when: str | None, now: datetime) -> float | None:
    return round((now - datetime.fromisoformat(when)).total_seconds() / 3600, 1) if when else None


COMPLIANCE_COLUMNS = (
    "host",
    "last_patch",
    "days_since_patch",
    "pending_security_updates",
    "last_backup",
    "backup_age_hours",
    "last_drill",
    "drill_rto_s",
    "drill_rto_target_s",
    "drill_rpo_s",
    "drill_rpo_target_s",
    "drill_passed",
    "failed_runs",
)


def compliance_report(ledger: Ledger, since: str, fmt: str) -> str:
    data = compliance(ledger, since)
    if fmt == "json":
        return to_json(data)
    if fmt == "csv":
        return to_csv(
            COMPLIANCE_COLUMNS,
            (
                [
                    " ".join(host[c])
                    if c == "failed_runs"
                    else ("" if host[c] is None else host[c])
                    for c in COMPLIANCE_COLUMNS
                ]
                for host in data["hosts"]
            ),
        )
    return html("compliance.html.j2", data=data, columns=COMPLIANCE_COLUMNS)
