"""The drill report: one disaster-recovery drill, RTO and RPO against their targets, the
files verified, and the trend of the same system's drills."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runner.core.errors import UserError
from runner.ledger.store import Ledger
from runner.reports.model import RunView, find_run, load_runs, verification
from runner.reports.render import html, markdown, to_json


def _drills_of(run: RunView) -> dict[str, dict[str, Any]]:
    """The drill evidence a finished run recorded, per standby (dr_drill's result.yml)."""
    evidence = (run.end.body.get("evidence") if run.end else None) or {}
    return {
        host: found["drill"]
        for host, found in evidence.items()
        if isinstance(found, dict) and isinstance(found.get("drill"), dict)
    }


# set_stats hands values over as templated, which may be text ("412.3", "True"): the
# report compares numbers and booleans, whatever the Ansible version recorded.
def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "yes", "1")


def _met(measured: float | None, target: float | None) -> bool | None:
    """Within the target (as the role judges: a miss is measured > target); None unmeasured."""
    if measured is None or target is None:
        return None
    return measured <= target


def _drill_row(run: RunView, host: str, drill: dict[str, Any]) -> dict[str, Any]:
    rto, rto_target = _number(drill.get("rto_s")), _number(drill.get("rto_target_s"))
    rpo, rpo_target = _number(drill.get("rpo_s")), _number(drill.get("rpo_target_s"))
    mismatches = []
    for found in drill.get("mismatches") or []:
        if isinstance(found, dict):
            mismatches.append({"path": found.get("path"), "problem": found.get("problem")})
        else:
            mismatches.append({"path": str(found), "problem": None})
    return {
        "run_id": run.run_id,
        "run_status": run.status,
        "check": bool(run.started.body.get("check")),
        "date": drill.get("started") or run.start_time,
        "system": drill.get("source") or host,
        "source": drill.get("source"),
        "standby": drill.get("standby") or host,
        "archive": drill.get("archive"),
        "archive_time": drill.get("archive_time"),
        "rto_s": rto,
        "rto_target_s": rto_target,
        "rto_met": _met(rto, rto_target),
        "rpo_s": rpo,
        "rpo_target_s": rpo_target,
        "rpo_met": _met(rpo, rpo_target),
        "passed": _flag(drill.get("passed")),
        "reason": drill.get("reason") or None,
        "files_verified": _count(drill.get("files_verified")),
        "files_total": _count(drill.get("files_total")),
        "mismatches": mismatches,
        "db_rows": drill.get("db_rows") if isinstance(drill.get("db_rows"), dict) else {},
        "kept": _flag(drill.get("kept")),
    }


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
        trend = [
            {**past, "current": past["run_id"] == run.run_id and past["standby"] == row["standby"]}
            for past in history
            if past["system"] == row["system"]
        ]
        row["trend"] = trend
        row["trend_summary"] = {
            "drills": len(trend),
            "passed": sum(1 for t in trend if t["passed"]),
            "failed": sum(1 for t in trend if not t["passed"]),
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
        "passed": all(d["passed"] is True for d in drills),
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
