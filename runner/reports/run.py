"""The report of one run: who, what, where, the outcome per host, the evidence the roles
published, and whether the ledger verifies.

The evidence is shown twice: as recorded (whatever its shape), and, for patching and drills,
as tables read through the declarations of runner.ledger.evidence, where a value that does
not fit shows as "unknown" and the problems are listed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runner.ledger.evidence import Reading
from runner.ledger.store import Ledger
from runner.reports.model import EVIDENCE_AREAS, get_run, verification
from runner.reports.render import html, markdown, to_json

UNKNOWN = "unknown"


def run_report(ledger: Ledger, run_id: str, fmt: str) -> str:
    run = get_run(ledger, run_id)
    data = run.as_dict()
    data["ledger"] = verification(ledger.verify())
    evidence = run.evidence
    data["evidence_problems"] = evidence.problems()
    if fmt == "json":
        return to_json(data)
    template = "run.md.j2" if fmt == "md" else "run.html.j2"
    end = run.end.body if run.end else {}
    areas = sorted(
        {area for per_host in evidence.hosts.values() for area in per_host},
        key=lambda a: (a not in EVIDENCE_AREAS, a),
    )
    recorded = {
        area: [
            (host, per_host[area])
            for host, per_host in sorted(evidence.hosts.items())
            if area in per_host
        ]
        for area in areas
    }
    render = markdown if fmt == "md" else html
    return render(
        template,
        run=run,
        start=run.started.body,
        end=end,
        ledger=data["ledger"],
        areas=areas,
        recorded=recorded,
        patch_rows=[patch_row(h, e) for h, e in evidence.area("patch").items()],
        drill_rows=[drill_row(h, e) for h, e in evidence.area("drill").items()],
        problems=data["evidence_problems"],
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _amount(value: float | int) -> str:
    """A number as people write it: 7200, 412.5 (never 7200.0 or 7.2e+03)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _count(e: Reading, key: str) -> str:
    return str(len(e.get(key))) if e.known(key) else UNKNOWN


def patch_row(host: str, e: Reading) -> dict[str, Any]:
    """One host's patch evidence as the table shows it."""
    status = e.get("status") if e.known("status") else None
    row: dict[str, Any] = {
        "host": host,
        "status": status or UNKNOWN,
        "forced_reason": e.get("forced_reason"),
        "versions": None,
    }
    if status == "refused":  # the gate stopped it: nothing below was attempted
        row.update(updates="not run", reboot="not run", pending="not run", versions=[])
        return row
    row["updates"] = f"{_count(e, 'updates_applied')} ({_count(e, 'security_updates_applied')})"
    if not e.known("rebooted"):
        row["reboot"] = UNKNOWN
    elif e.get("rebooted"):
        took = e.get("reboot_s")
        row["reboot"] = "rebooted" + (
            f" ({took} s)" if took is not None else "" if e.known("reboot_s") else " (time unknown)"
        )
    elif not e.known("reboot_required"):
        row["reboot"] = UNKNOWN
    else:
        row["reboot"] = {True: "required, not done", False: "not required", None: "not checked"}[
            e.get("reboot_required")
        ]
    if not e.known("security_pending_after"):
        row["pending"] = UNKNOWN
    elif e.get("security_pending_after") is None:
        row["pending"] = "not measured"
    else:
        row["pending"] = e.get("security_pending_after")
    if e.known("versions_before") and e.known("versions_after"):
        before, after = e.get("versions_before"), e.get("versions_after")
        row["versions"] = [
            (pkg, before.get(pkg) or "not installed", after.get(pkg) or "removed")
            for pkg in sorted(set(before) | set(after))
        ]
    return row


def _seconds(e: Reading, key: str, none: str) -> str:
    if not e.known(key):
        return UNKNOWN
    value = e.get(key)
    return none if value is None else f"{_amount(value)} s"


def drill_row(host: str, e: Reading) -> dict[str, Any]:
    """One standby's drill evidence as the table shows it."""
    passed = e.get("passed") if e.known("passed") else None
    mismatches = (
        ", ".join(m.get("path") or UNKNOWN for m in e.get("mismatches"))
        if e.known("mismatches")
        else UNKNOWN
    )
    archive = e.get("archive") if e.known("archive") else UNKNOWN
    return {
        "host": host,
        "system": e.get("source") if e.known("source") else UNKNOWN,
        "result": UNKNOWN if passed is None else ("passed" if passed else "failed"),
        "reason": e.get("reason"),
        "rto": f"{_seconds(e, 'rto_s', 'not measured')} ({_seconds(e, 'rto_target_s', 'none')})",
        "rpo": f"{_seconds(e, 'rpo_s', 'not measured')} ({_seconds(e, 'rpo_target_s', 'none')})",
        "files": e.get("files_verified") if e.known("files_verified") else UNKNOWN,
        "mismatches": mismatches,
        "archive": "none found" if archive is None else archive,
    }
