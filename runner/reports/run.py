"""The report of one run: who, what, where, the outcome per host, the evidence the roles
published, and whether the ledger verifies."""

from __future__ import annotations

from datetime import UTC, datetime

from runner.ledger.store import Ledger
from runner.reports.model import EVIDENCE_AREAS, get_run, verification
from runner.reports.render import html, markdown, to_json


def run_report(ledger: Ledger, run_id: str, fmt: str) -> str:
    run = get_run(ledger, run_id)
    data = run.as_dict()
    data["ledger"] = verification(ledger.verify())
    if fmt == "json":
        return to_json(data)
    template = "run.md.j2" if fmt == "md" else "run.html.j2"
    end = run.end.body if run.end else {}
    evidence = end.get("evidence") or {}
    areas = sorted(
        {area for per_host in evidence.values() for area in per_host},
        key=lambda a: (a not in EVIDENCE_AREAS, a),
    )
    render = markdown if fmt == "md" else html
    return render(
        template,
        run=run,
        start=run.started.body,
        end=end,
        ledger=data["ledger"],
        areas=areas,
        evidence=evidence,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
    )
