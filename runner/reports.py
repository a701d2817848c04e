"""Reports, read from the ledger alone: an auditor can render and verify them on a machine
without Ansible or access to the hosts.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from runner.errors import UserError
from runner.ledger import Entry, Ledger, Verification

EVIDENCE_AREAS = ("patch", "access", "backup", "drill")


@dataclass
class RunView:
    """One run as the ledger knows it: its started entry and its terminal entry, if any."""

    run_id: str
    started: Entry
    end: Entry | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.end is None:
            return "running"
        return self.end.body.get("status", self.end.kind.removeprefix("run."))

    @property
    def playbook(self) -> str:
        return self.started.body.get("playbook", "")

    @property
    def hosts(self) -> dict[str, dict[str, Any]]:
        return (self.end.body.get("hosts") if self.end else None) or {}

    @property
    def start_time(self) -> str:
        return self.started.created

    @property
    def end_time(self) -> str | None:
        return self.end.created if self.end else None

    @property
    def who(self) -> str:
        who = self.started.body.get("who") or {}
        text = f"{who.get('kind', '?')}:{who.get('name', '?')}"
        if who.get("sudo_user"):
            text += f" (sudo from {who['sudo_user']})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "playbook": self.playbook,
            "started": self.start_time,
            "finished": self.end_time,
            "who": self.who,
            "start": self.started.body,
            "end": self.end.body if self.end else None,
            "entries": [
                {"seq": e.seq, "kind": e.kind, "hash": e.hash, "prev_hash": e.prev_hash}
                for e in self.entries
            ],
        }


def load_runs(ledger: Ledger) -> dict[str, RunView]:
    runs: dict[str, RunView] = {}
    for entry in ledger.entries():
        if entry.kind == "run.started":
            runs[entry.run_id] = RunView(entry.run_id, entry, entries=[entry])
        elif entry.kind in ("run.finished", "run.interrupted") and entry.run_id in runs:
            runs[entry.run_id].end = entry
            runs[entry.run_id].entries.append(entry)
    return runs


def filter_runs(
    runs: dict[str, RunView],
    *,
    playbook: str | None = None,
    status: str | None = None,
    host: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[RunView]:
    chosen = []
    for run in runs.values():
        if playbook and playbook not in run.playbook:
            continue
        if status and run.status != status:
            continue
        # Hosts that reported results; for a run without results yet, those it may touch.
        touched = run.hosts or (run.started.body.get("hosts") or [])
        if host and host not in touched:
            continue
        if since and run.start_time < since:
            continue
        if until and run.start_time > until:
            continue
        chosen.append(run)
    return sorted(chosen, key=lambda r: r.start_time)


def parse_date(value: str, *, end_of_day: bool = False) -> str:
    """A date or date-time from the command line, as the ledger's ISO UTC text."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"bad date {value!r}: use YYYY-MM-DD or an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if end_of_day and len(value) == 10:
        parsed = parsed.replace(hour=23, minute=59, second=59, microsecond=999999)
    return parsed.astimezone(UTC).isoformat(timespec="microseconds")


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("runner", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    return env


def get_run(ledger: Ledger, run_id: str) -> RunView:
    return _find_run(load_runs(ledger), run_id, ledger)


def _find_run(runs: dict[str, RunView], run_id: str, ledger: Ledger) -> RunView:
    """The run with this id, or the one run whose id starts with it."""
    if run_id in runs:
        return runs[run_id]
    matches = [r for r in runs if r.startswith(run_id)]
    if len(matches) == 1:
        return runs[matches[0]]
    if not matches:
        raise UserError(f"no run {run_id!r} in the ledger {ledger.where} (list them: techops runs)")
    raise UserError(f"run id {run_id!r} is ambiguous: {', '.join(sorted(matches)[:5])}")


# ---------------------------------------------------------------------- one run


def run_report(ledger: Ledger, run_id: str, fmt: str) -> str:
    run = get_run(ledger, run_id)
    verification = ledger.verify()
    data = run.as_dict()
    data["ledger"] = _verification(verification)
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    template = "run.md.j2" if fmt == "md" else "run.html.j2"
    end = run.end.body if run.end else {}
    evidence = end.get("evidence") or {}
    areas = sorted(
        {area for per_host in evidence.values() for area in per_host},
        key=lambda a: (a not in EVIDENCE_AREAS, a),
    )
    return (
        _env()
        .get_template(template)
        .render(
            run=run,
            start=run.started.body,
            end=end,
            ledger=data["ledger"],
            areas=areas,
            evidence=evidence,
            generated=datetime.now(UTC).isoformat(timespec="seconds"),
        )
    )


def _verification(verification: Verification) -> dict[str, Any]:
    return {
        "verified": verification.ok,
        "entries": verification.entries,
        "head_seq": verification.head_seq,
        "head_hash": verification.head_hash,
        "problem": verification.problem.reason if verification.problem else None,
        "checkpoints_checked": verification.checkpoints_checked,
    }


# ---------------------------------------------------------------------- compliance


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
        "ledger": _verification(ledger.verify()),
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
        return json.dumps(data, indent=2, sort_keys=True)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COMPLIANCE_COLUMNS)
        for host in data["hosts"]:
            writer.writerow(
                [
                    " ".join(host[c])
                    if c == "failed_runs"
                    else ("" if host[c] is None else host[c])
                    for c in COMPLIANCE_COLUMNS
                ]
            )
        return out.getvalue()
    return _env().get_template("compliance.html.j2").render(data=data, columns=COMPLIANCE_COLUMNS)


# ---------------------------------------------------------------------- one drill


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
    run = _find_run(runs, run_id, ledger)
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
        "ledger": _verification(ledger.verify()),
    }


def drill_report(ledger: Ledger, run_id: str, fmt: str) -> str:
    data = drill(ledger, run_id)
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    template = "drill.md.j2" if fmt == "md" else "drill.html.j2"
    return _env().get_template(template).render(data=data)


def runs_table(runs: list[RunView]) -> str:
    rows = [("RUN", "STATUS", "STARTED (UTC)", "PLAYBOOK", "HOSTS", "WHO")]
    for run in runs:
        rows.append(
            (
                run.run_id,
                run.status,
                run.start_time[:19].replace("T", " "),
                run.playbook,
                str(len(run.hosts) or len(run.started.body.get("hosts") or [])),
                run.who,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


# ---------------------------------------------------------------------- access review

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
        "ledger": _verification(ledger.verify()),
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
        return json.dumps(data, indent=2, sort_keys=True)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(ACCESS_COLUMNS)
        for row in data["users"]:
            writer.writerow(["" if row[c] is None else row[c] for c in ACCESS_COLUMNS])
        return out.getvalue()
    return _env().get_template("access.html.j2").render(data=data, columns=ACCESS_COLUMNS)
