"""The access review: every user per host as the access roles last reported them, the
revoked ones with the run that revoked them, and the automation exemptions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runner.ledger.store import Ledger
from runner.reports.model import load_runs, verification
from runner.reports.render import html, to_csv, to_json

ACCESS_COLUMNS = (
    "user",
    "host",
    "state",
    "vpn_peer",
    "vpn_address",
    "last_handshake",
    "totp_enrolled",
    "last_seen_run",
    "revoked_by_run",
)


def access_review(ledger: Ledger) -> dict[str, Any]:
    """Every user the access roles reported, per host, as of the latest run that saw them;
    revoked users with the run that revoked them; the automation exemptions."""
    users: dict[tuple[str, str], dict[str, Any]] = {}
    exemptions: dict[str, Any] = {}
    for run in sorted(load_runs(ledger).values(), key=lambda r: r.start_time):
        if run.end is None or run.started.body.get("check"):
            continue
        for host, found in (run.end.body.get("evidence") or {}).items():
            access = found.get("access") if isinstance(found, dict) else None
            if not isinstance(access, dict):
                continue
            for user in access.get("users") or []:
                key = (str(user.get("name")), host)
                row = users.setdefault(key, {"user": key[0], "host": host, "revoked_by_run": None})
                row.update(
                    {
                        "state": user.get("state", "present"),
                        "vpn_peer": user.get("vpn_peer"),
                        "vpn_address": user.get("vpn_address"),
                        "last_handshake": _epoch(user.get("last_handshake")),
                        "totp_enrolled": user.get("totp_enrolled"),
                        "last_seen_run": run.run_id,
                    }
                )
                if row["state"] == "present":
                    row["revoked_by_run"] = None
            for name in access.get("revoked") or []:
                row = users.setdefault((str(name), host), {"user": str(name), "host": host})
                if row.get("state") != "absent" or not row.get("revoked_by_run"):
                    row.update(
                        {
                            "state": "absent",
                            "vpn_peer": "absent",
                            "totp_enrolled": False,
                            "last_seen_run": run.run_id,
                            "revoked_by_run": row.get("revoked_by_run") or run.run_id,
                        }
                    )
            if access.get("automation_exemption"):
                exemptions[host] = {**access["automation_exemption"], "run": run.run_id}
    rows = [users[k] for k in sorted(users)]
    for row in rows:
        for column in ACCESS_COLUMNS:
            row.setdefault(column, None)
    return {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "users": rows,
        "automation_exemptions": exemptions,
        "ledger": verification(ledger.verify()),
    }


def _epoch(value: Any) -> str | None:
    if value in (None, "", 0):
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError):
        return str(value)


def access_report(ledger: Ledger, fmt: str) -> str:
    data = access_review(ledger)
    if fmt == "json":
        return to_json(data)
    if fmt == "csv":
        return to_csv(
            ACCESS_COLUMNS,
            (["" if row[c] is None else row[c] for c in ACCESS_COLUMNS] for row in data["users"]),
        )
    return html("access.html.j2", data=data, columns=ACCESS_COLUMNS)
