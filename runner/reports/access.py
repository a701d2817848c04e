"""The access review: every user per host as the access roles last reported them, the
revoked ones with the run that revoked them, and the automation exemptions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runner.ledger.store import Ledger
from runner.reports.model import RUN_WIDE, load_runs, verification
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


# Columns measured on the host in a run, by their key in a user's access record.
MEASURED = {
    "state": "state",
    "vpn_peer": "vpn_peer",
    "vpn_address": "vpn_address",
    "last_handshake": "last_handshake",
    "totp_enrolled": "totp_enrolled",
}


def access_review(ledger: Ledger) -> dict[str, Any]:
    """Every user the access roles reported, per host, as of the latest run that saw them;
    revoked users with the run that revoked them; the automation exemptions. A value the
    evidence does not give is None and its column is named in the row's `unknown`."""
    users: dict[tuple[str, str], dict[str, Any]] = {}
    exemptions: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    for run in sorted(load_runs(ledger).values(), key=lambda r: r.start_time):
        if run.end is None or run.started.body.get("check"):
            continue
        for host, access in run.evidence.area("access").items():
            if host == RUN_WIDE:
                continue
            problems += [
                {"run": run.run_id, "host": host, "problem": problem} for problem in access.problems
            ]
            seen = set()
            for user in access.get("users") or []:
                if "name" not in user:
                    continue  # whose record it is is unknown: named in the problems
                key = (user["name"], host)
                seen.add(key)
                row = users.setdefault(key, {"user": key[0], "host": host, "revoked_by_run": None})
                for column, field in MEASURED.items():
                    row[column] = user.get(field)
                row["last_handshake"] = _epoch(user.get("last_handshake"))
                row["unknown"] = [c for c, f in MEASURED.items() if f not in user]
                row["last_seen_run"] = run.run_id
                if row["state"] == "present":
                    row["revoked_by_run"] = None
            for name in access.get("revoked") or []:
                key = (name, host)
                row = users.setdefault(key, {"user": name, "host": host, "revoked_by_run": None})
                if key not in seen:
                    # Revoked in this run, but not measured by it: what the host holds now is
                    # unknown, not assumed gone.
                    row.update(dict.fromkeys(MEASURED))
                    row["unknown"] = [c for c in MEASURED if c != "state"]
                    row["last_seen_run"] = run.run_id
                row["state"] = "absent"
                if not row.get("revoked_by_run"):
                    row["revoked_by_run"] = run.run_id
            if access.known("automation_exemption"):
                exemptions[host] = {**access.get("automation_exemption"), "run": run.run_id}
    rows = [users[k] for k in sorted(users)]
    for row in rows:
        for column in ACCESS_COLUMNS:
            row.setdefault(column, None)
        row.setdefault("unknown", [])
    return {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "users": rows,
        "automation_exemptions": exemptions,
        "evidence_problems": problems,
        "ledger": verification(ledger.verify()),
    }


def _epoch(value: Any) -> str | None:
    """A handshake's epoch seconds as UTC ISO text; None for none (0 is WireGuard's "never")."""
    if not isinstance(value, int) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


def access_report(ledger: Ledger, fmt: str) -> str:
    data = access_review(ledger)
    if fmt == "json":
        return to_json(data)
    if fmt == "csv":
        return to_csv(
            ACCESS_COLUMNS,
            ([_cell(row, c) for c in ACCESS_COLUMNS] for row in data["users"]),
        )
    return html("access.html.j2", data=data, columns=ACCESS_COLUMNS)


def _cell(row: dict[str, Any], column: str) -> Any:
    if column in row["unknown"]:
        return "unknown"
    return "" if row[column] is None else row[column]
