"""The incident report: every incident that started in a period, and per alert name and
per host how long acknowledging and resolving took (MTTA, MTTR: mean and median).

It reads the ledger alone, like the other reports, and says nothing the ledger does not
show. An incident nobody acknowledged has no time to acknowledge: it reads "not
acknowledged", is left out of the MTTA, and the report says how many were left out; an
incident still open is left out of the MTTR the same way. Times run from the alert's start
(Prometheus's `startsAt`) to the acknowledgement, and to the first word that it resolved
(Alertmanager's end of the alert, or a person's resolve, whichever came first).

It lives beside the incidents it reads (reports may not import monitoring) and renders
through runner.reports.render with a template of runner/reports/templates, as every
report does.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from runner.ledger.store import Ledger
from runner.monitoring.incidents import (
    Incident,
    describe,
    duration_text,
    load_incidents,
    moment,
)
from runner.reports.model import verification
from runner.reports.render import html, to_csv, to_json

NO_ALERTNAME = "(no alertname)"
NO_HOST = "(no host or instance label)"

CSV_COLUMNS = (
    "scope",
    "name",
    "incident",
    "alert",
    "host",
    "instance",
    "severity",
    "status",
    "fired",
    "acknowledged",
    "acknowledged_by",
    "time_to_ack_s",
    "resolved",
    "resolved_by",
    "time_to_resolve_s",
    "runs",
    "runbook_url",
    "incidents",
    "not_acknowledged",
    "mtta_s",
    "mtta_median_s",
    "open",
    "mttr_s",
    "mttr_median_s",
)


def _seconds(value: float) -> float:
    return round(value, 1)


def stats(items: Iterable[Incident]) -> dict[str, Any]:
    """Counts, MTTA and MTTR over incidents: the means and medians cover only those with a
    time; the others are counted apart (not_acknowledged, open)."""
    chosen = list(items)
    to_ack = [t for i in chosen if (t := i.time_to_ack) is not None]
    to_resolve = [t for i in chosen if (t := i.time_to_resolve) is not None]
    return {
        "incidents": len(chosen),
        "acknowledged": len(to_ack),
        "not_acknowledged": len(chosen) - len(to_ack),
        "mtta_s": _seconds(statistics.fmean(to_ack)) if to_ack else None,
        "mtta_median_s": _seconds(statistics.median(to_ack)) if to_ack else None,
        "resolved": len(to_resolve),
        "open": len(chosen) - len(to_resolve),
        "mttr_s": _seconds(statistics.fmean(to_resolve)) if to_resolve else None,
        "mttr_median_s": _seconds(statistics.median(to_resolve)) if to_resolve else None,
    }


def _grouped(
    chosen: list[Incident], key: Callable[[Incident], str | None], absent: str
) -> list[dict[str, Any]]:
    groups: dict[str, list[Incident]] = {}
    for incident in chosen:
        groups.setdefault(key(incident) or absent, []).append(incident)
    return [{"name": name, **stats(groups[name])} for name in sorted(groups)]


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _in_period(incident: Incident, since: datetime | None, until: datetime | None) -> bool:
    started = incident.started
    if started is None:
        return since is None and until is None
    return (since is None or started >= since) and (until is None or started <= until)


def _row(incident: Incident) -> dict[str, Any]:
    row = describe(incident)
    url = row["runbook_url"]
    # Only a web address becomes a link: text from the ledger never runs in the reader.
    row["runbook_link"] = isinstance(url, str) and url.lower().startswith(("https://", "http://"))
    row["time_to_ack_text"] = duration_text(row["time_to_ack_s"])
    row["time_to_resolve_text"] = duration_text(row["time_to_resolve_s"])
    return row


def incident_data(
    ledger: Ledger,
    since: str | None = None,
    until: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The incidents that started in [since, until] (ledger ISO UTC text, as --since and
    --until give them), each with all the ledger holds of it up to now, and the MTTA and
    MTTR per alert name, per host and over all."""
    now = now or datetime.now(UTC)
    start, end = moment(since), moment(until)
    chosen = [
        incident for incident in load_incidents(ledger).values() if _in_period(incident, start, end)
    ]
    chosen.sort(key=lambda i: (i.started or now, i.id))
    upto = _when(end) if end else _when(now)
    if start:
        title = f"Incidents since {_when(start)} until {upto}"
    else:
        title = f"Incidents, all records up to {upto}"
    return {
        "title": title,
        "period": {"since": since, "until": until},
        "generated": now.isoformat(timespec="seconds"),
        "incidents": [_row(i) for i in chosen],
        "by_alert": _grouped(chosen, lambda i: i.alertname, NO_ALERTNAME),
        "by_host": _grouped(chosen, lambda i: i.host, NO_HOST),
        "overall": stats(chosen),
        "ledger": verification(ledger.verify()),
    }


def _summary_cells(scope: str, group: dict[str, Any]) -> dict[str, Any]:
    return {
        "scope": scope,
        "name": group["name"],
        "incidents": group["incidents"],
        "not_acknowledged": group["not_acknowledged"],
        "mtta_s": "none acknowledged" if group["mtta_s"] is None else group["mtta_s"],
        "mtta_median_s": "" if group["mtta_median_s"] is None else group["mtta_median_s"],
        "open": group["open"],
        "mttr_s": "none resolved" if group["mttr_s"] is None else group["mttr_s"],
        "mttr_median_s": "" if group["mttr_median_s"] is None else group["mttr_median_s"],
    }


def _incident_cells(row: dict[str, Any]) -> dict[str, Any]:
    acked = row["time_to_ack_s"]
    resolved = row["time_to_resolve_s"]
    return {
        "scope": "incident",
        "incident": row["id"],
        "alert": row["alert"] or NO_ALERTNAME,
        "host": row["host"] or "",
        "instance": row["instance"] or "",
        "severity": row["severity"] or "",
        "status": row["status"],
        "fired": row["fired"] or "unknown",
        "acknowledged": row["acknowledged"] or "",
        "acknowledged_by": row["acknowledged_by"] or "",
        "time_to_ack_s": "not acknowledged" if acked is None else _seconds(acked),
        "resolved": row["resolved"] or "",
        "resolved_by": row["resolved_by"] or "",
        "time_to_resolve_s": "not resolved" if resolved is None else _seconds(resolved),
        "runs": " ".join(row["runs"]),
        "runbook_url": row["runbook_url"] or "",
    }


def csv_rows(data: dict[str, Any]) -> list[list[Any]]:
    """One table: a row per incident (scope `incident`), then the summaries (scope
    `alert`, `host`, and `all`), each filling the columns that apply to it."""
    rows = [_incident_cells(row) for row in data["incidents"]]
    rows += [_summary_cells("alert", group) for group in data["by_alert"]]
    rows += [_summary_cells("host", group) for group in data["by_host"]]
    rows.append(_summary_cells("all", {"name": "all", **data["overall"]}))
    return [[row.get(column, "") for column in CSV_COLUMNS] for row in rows]


def incident_report(
    ledger: Ledger,
    since: str | None,
    until: str | None,
    fmt: str,
    *,
    now: datetime | None = None,
) -> str:
    data = incident_data(ledger, since, until, now=now)
    if fmt == "json":
        return to_json(data)
    if fmt == "csv":
        return to_csv(CSV_COLUMNS, csv_rows(data))
    return html("incidents.html.j2", data=data, duration=duration_text)
