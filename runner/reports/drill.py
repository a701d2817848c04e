"""The drill report: one disaster-recovery drill, RTO and RPO against their targets, the
files verified, and the trend of the same system's drills."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runner.core.errors import UserError
from runner.ledger.evidence import Reading
from runner.ledger.store import Ledger
from runner.reports.model import RUN_WIDE, RunView, find_run, load_runs, verification
from runner.reports.render import html, markdown, to_json


def _drills_of(run: RunView) -> dict[str, Reading]:
    """The drill evidence a finished run recorded, per standby (dr_drill's result.yml), as
    far as it fits its declaration: set_stats may have handed values over as text ("412.3",
    "True"), which is read as what it spells; anything else is left out, and shown unknown."""
    return {
        host: reading for host, reading in run.evidence.area("drill").items() if host != RUN_WIDE
    }


def _met(measured: float | None, target: float | None) -> bool | None:
    """Within the target (as the role judges: a miss is measured > target); None unmeasured."""
    if measured is None or target is None:
        return None
    return measured <= target


# Row fields read straight from the evidence, by their key there.
_READ = {
    "date": "started",
    "system": "source",
    "source": "source",
    "standby": "standby",
    "archive": "archive",
    "archive_time": "archive_time",
    "rto_s": "rto_s",
    "rto_target_s": "rto_target_s",
    "rpo_s": "rpo_s",
    "rpo_target_s": "rpo_target_s",
    "passed": "passed",
    "reason": "reason",
    "files_verified": "files_verified",
    "files_total": "files_total",
    "kept": "kept",
}


def _drill_row(run: RunView, host: str, drill: Reading) -> dict[str, Any]:
    """One standby's drill as the report shows it. A value the evidence does not give is
    None and named in `unknown`: never the run's time for the drill's, nor the standby's
    name for the system's."""
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "run_status": run.status,
        "check": bool(run.started.body.get("check")),
        "reported_by": host,
    }
    unknown = []
    for column, key in _READ.items():
        row[column] = drill.get(key)
        if not drill.known(key):
            unknown.append(column)
    row["rto_met"] = _met(row["rto_s"], row["rto_target_s"])
    row["rpo_met"] = _met(row["rpo_s"], row["rpo_target_s"])
    row["mismatches"] = [
        {"path": found.get("path"), "problem": found.get("problem")}
        for found in drill.get("mismatches") or []
    ]
    if not drill.known("mismatches"):
        unknown.append("mismatches")
    row["db_rows"] = drill.get("db_rows") or {}
    if not drill.known("db_rows"):
        unknown.append("db_rows")
    row["unknown"] = unknown
    row["problems"] = list(drill.problems)
    return row


def _verdict(values: list[bool | None]) -> bool | None:
    """Passed when every one passed, failed when one failed, else unknown."""
    if any(v is False for v in values):
        return False
    return True if values and all(v is True for v in values) else None


def drill(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """One drill run: per standby, RTO and RPO against their targets, the files verified,
    the mismatches, the archive, pass or fail; and the trend, the drills of the same system
    recorded up to this one (check-mode runs left out)."""
    runs = load_runs(ledger)
    run = find_run(runs, run_id, ledger)
    if run.end is None:
        raise UserError(f"run {run.run_id} has not finished: its drill has no result yet")
    found = _drills_of(run)
    if not found:
        raise UserError(
            f"run {run.run_id} ({run.playbook or 'no playbook'}) recorded no drill result "
            "(list the drills: techops runs --playbook dr_drill)"
        )
    history = [
        _drill_row(other, host, evidence)
        for other in sorted(runs.values(), key=lambda r: r.start_time)
        if other.start_time <= run.start_time
        and (other is run or not other.started.body.get("check"))
        for host, evidence in _drills_of(other).items()
    ]
    drills = []
    for host, evidence in sorted(found.items()):
        row = _drill_row(run, host, evidence)
        # The drills of the same system; of an unknown system, this one alone.
        trend = [
            {
                **past,
                "current": past["run_id"] == run.run_id
                and past["reported_by"] == row["reported_by"],
            }
            for past in history
            if (row["system"] is not None and past["system"] == row["system"])
            or (past["run_id"] == run.run_id and past["reported_by"] == row["reported_by"])
        ]
        row["trend"] = trend
        row["trend_summary"] = {
            "drills": len(trend),
            "passed": sum(1 for t in trend if t["passed"] is True),
            "failed": sum(1 for t in trend if t["passed"] is False),
            "unknown": sum(1 for t in trend if t["passed"] is None),
        }
        drills.append(row)
    return {
        "run_id": run.run_id,
        "status": run.status,
        "playbook": run.playbook,
        "started": run.start_time,
        "finished": run.end_time,
        "who": run.who,
        "check": bool(run.started.body.get("check")),
        "passed": _verdict([d["passed"] for d in drills]),
        "drills": drills,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "ledger": verification(ledger.verify()),
    }


def drill_report(ledger: Ledger, run_id: str, fmt: str) -> str:
    data = drill(ledger, run_id)
    if fmt == "json":
        return to_json(data)
    template = "drill.md.j2" if fmt == "md" else "drill.html.j2"
    return markdown(template, data=data) if fmt == "md" else html(template, data=data)
