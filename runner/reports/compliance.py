"""The compliance report: per host of an inventory, and of every other host the ledger
knows, the last successful patch, the latest backup archive, the latest drill of the
system, and the failed runs of the period, each judged against thresholds.

An auditor must be able to believe every line. A value comes from the evidence that states
it, or the report says "unknown" or "never" and flags the host: a backup's age is the age of
the archive the repository holds, never of the run that looked; a drill is filed under the
system whose backup was restored, naming the standby it was restored onto; a host of the
inventory that no run touched is listed, flagged, instead of being left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from runner.core.errors import UserError
from runner.core.paths import repo_root
from runner.ledger.evidence import Reading, moment
from runner.ledger.store import Ledger
from runner.reports.model import CHANGE_DECISION, RUN_WIDE, RunView, load_runs, verification
from runner.reports.render import html, markdown, to_csv, to_json

# A host whose run ended with one of these outcomes went through the run's plays.
OK_OUTCOMES = ("ok", "changed", "rescued", "skipped")
# Statuses of a check, as every format shows them.
OK, BREACH, NEVER, UNKNOWN, FAILED, NOT_REQUIRED = (
    "ok",
    "breach",
    "never",
    "unknown",
    "failed",
    "not required",
)
# Statuses that are findings: what an auditor must look at.
FINDINGS = (BREACH, NEVER, UNKNOWN, FAILED)
# How many of an evidence record's problems a flag quotes; the run report lists them all.
QUOTED_PROBLEMS = 3


# ---------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Limit:
    """How old a check's record may be, and the inventory groups whose hosts must have
    it (`all` for every host)."""

    max_age: float
    unit: str  # "days" or "hours"
    groups: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return self.max_age * (86400 if self.unit == "days" else 3600)

    def text(self) -> str:
        amount = f"{self.max_age:g}"
        return f"{amount} days" if self.unit == "days" else f"{amount} h"

    def applies_to(self, groups: frozenset[str]) -> bool:
        return bool(groups & set(self.groups))

    def as_dict(self) -> dict[str, Any]:
        return {f"max_age_{self.unit}": self.max_age, "groups": list(self.groups)}


@dataclass(frozen=True)
class Thresholds:
    """The limits each check is judged against, and where they were read."""

    patch: Limit = Limit(35, "days", ("all",))
    backup: Limit = Limit(26, "hours", ("backup_clients",))
    drill: Limit = Limit(40, "days", ("backup_clients",))
    source: str = "the built-in defaults"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "patch": self.patch.as_dict(),
            "backup": self.backup.as_dict(),
            "drill": self.drill.as_dict(),
        }


CHECKS = ("patch", "backup", "drill")


def load_thresholds(path: Path) -> Thresholds:
    """The `compliance` section of the file (schedules.yml), over the defaults; the
    defaults alone when the file or the section is absent. A section that cannot be read
    as documented is refused, naming the key, rather than half applied."""
    try:
        shown = str(path.resolve().relative_to(repo_root()))
    except ValueError:
        shown = str(path)
    if not path.is_file():
        return replace(Thresholds(), source=f"the built-in defaults ({shown} not found)")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{shown}: cannot read the compliance thresholds ({exc})") from None
    section = data.get("compliance") if isinstance(data, dict) else None
    if section is None:
        return replace(Thresholds(), source=f"the built-in defaults (no compliance: in {shown})")
    return thresholds_from(section, f"{shown}: compliance")


def thresholds_from(section: Any, where: str) -> Thresholds:
    """Thresholds from a `compliance` mapping: for each of patch, backup and drill, an
    optional `max_age_days` or `max_age_hours` and `groups`, the rest from the defaults."""
    if not isinstance(section, dict):
        raise UserError(f"{where} must be a mapping with patch, backup and drill")
    unknown = sorted(str(k) for k in section if k not in CHECKS)
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: patch, backup, drill)"
        )
    limits = {}
    defaults = Thresholds()
    for check in CHECKS:
        limits[check] = _limit(section.get(check), getattr(defaults, check), f"{where}.{check}")
    return Thresholds(**limits, source=where)


def _limit(spec: Any, default: Limit, where: str) -> Limit:
    if spec is None:
        return default
    if not isinstance(spec, dict):
        raise UserError(f"{where} must be a mapping (max_age_days or max_age_hours, groups)")
    known = {"max_age_days", "max_age_hours", "groups"}
    unknown = sorted(str(k) for k in spec if k not in known)
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    ages = [k for k in ("max_age_days", "max_age_hours") if k in spec]
    if len(ages) > 1:
        raise UserError(f"{where}: give max_age_days or max_age_hours, not both")
    limit = default
    if ages:
        value = spec[ages[0]]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise UserError(f"{where}.{ages[0]} must be a positive number (got {value!r})")
        limit = replace(limit, max_age=value, unit=ages[0].removeprefix("max_age_"))
    if "groups" in spec:
        groups = spec["groups"]
        if (
            not isinstance(groups, list)
            or not groups
            or not all(isinstance(g, str) and g for g in groups)
        ):
            raise UserError(
                f"{where}.groups must be a list of inventory group names (got {groups!r})"
            )
        limit = replace(limit, groups=tuple(groups))
    return limit


# ---------------------------------------------------------------------- what the ledger says


@dataclass(frozen=True)
class Inventory:
    """The inventory the report covers: its name as shown, and each host's groups."""

    name: str
    hosts: Mapping[str, frozenset[str]]


@dataclass
class _Record:
    """One run's evidence of one area for a host."""

    run: RunView
    reading: Reading


@dataclass
class _Host:
    name: str
    # A host outside the inventory (or without one) is known to belong to `all` only.
    groups: frozenset[str]
    in_inventory: bool | None  # None: no inventory given
    touched: bool = False
    patch: _Record | None = None  # the last successful patch
    patch_unsure: list[_Record] = field(default_factory=list)  # later, success unknown
    backup: _Record | None = None  # the latest reading of the repository
    drill: _Record | None = None  # the latest drill of this system
    failed_runs: list[str] = field(default_factory=list)
    unwrapped_runs: list[str] = field(default_factory=list)  # started outside techops
    notes: list[str] = field(default_factory=list)


def _problems(area: str, record: _Record) -> str | None:
    problems = record.reading.problems
    if not problems:
        return None
    quoted = "; ".join(problems[:QUOTED_PROBLEMS])
    more = (
        f"; and {len(problems) - QUOTED_PROBLEMS} more" if len(problems) > QUOTED_PROBLEMS else ""
    )
    return (
        f"{area} evidence of run {record.run.run_id} does not fit its declaration: {quoted}{more}"
    )


def _collect(
    runs: Sequence[RunView], since: str | None, inventory: Inventory | None
) -> dict[str, _Host]:
    hosts: dict[str, _Host] = {}
    if inventory is not None:
        for name, groups in inventory.hosts.items():
            hosts[name] = _Host(name, groups | {"all"}, True)

    def host(name: str) -> _Host:
        if name not in hosts:
            hosts[name] = _Host(name, frozenset({"all"}), False if inventory else None)
        return hosts[name]

    for run in runs:
        in_period = since is None or run.start_time >= since
        locked = run.started.body.get("hosts")
        locked = [h for h in locked if isinstance(h, str)] if isinstance(locked, list) else []
        if run.unwrapped and in_period:
            # Started with plain ansible-playbook, outside techops' gate: counted against
            # every host it touched or may touch, finished or not.
            for name in sorted({*locked, *run.hosts}):
                host(name).unwrapped_runs.append(run.run_id)
        if run.end is None:
            for name in locked:  # still running: it touches them, nothing is known yet
                host(name).touched = True
            continue
        check_mode = bool(run.started.body.get("check"))
        outcomes = {
            name: (result.get("outcome") if isinstance(result, dict) else None)
            for name, result in run.hosts.items()
        }
        for name, outcome in outcomes.items():
            entry = host(name)
            entry.touched = True
            if outcome not in OK_OUTCOMES and in_period:
                entry.failed_runs.append(run.run_id)
        # A run that never reached its end (canceled, timed out, killed, an error) has no
        # per-host outcome: it counts against every host it had locked.
        if run.status not in ("successful", "failed"):
            for name in locked:
                entry = host(name)
                entry.touched = True
                if in_period and run.run_id not in entry.failed_runs:
                    entry.failed_runs.append(run.run_id)
        evidence = run.evidence
        for problem in evidence.unreadable:
            target = host(problem["host"]) if problem["host"] else None
            note = f"evidence of run {run.run_id} is unreadable: {problem['problem']}"
            for entry in [target] if target else [host(n) for n in outcomes]:
                entry.notes.append(note)
        if check_mode:
            continue  # a check-mode run changes nothing and may skip the reads
        # Evidence published for the run as a whole is about no host in particular.
        for name, reading in evidence.area("patch").items():
            if name != RUN_WIDE:
                _take_patch(host(name), _Record(run, reading), outcomes.get(name))
        for name, reading in evidence.area("backup").items():
            if name != RUN_WIDE:
                host(name).backup = _Record(run, reading)
        for name, reading in evidence.area("drill").items():
            if name == RUN_WIDE:
                continue
            record = _Record(run, reading)
            system = reading.get("source")
            if isinstance(system, str) and system:
                host(system).drill = record
            else:
                host(name).notes.append(
                    f"the drill of run {run.run_id} on {name} names no system "
                    "(source unknown): it counts for no host"
                )
    return hosts


def _take_patch(entry: _Host, record: _Record, outcome: str | None) -> None:
    """A patch counts when the host came through the run and the evidence says it
    succeeded, outside check mode; a record that cannot say so is remembered as unsure."""
    reading = record.reading
    entry.touched = True
    if reading.get("check_mode") is True:
        return
    status = reading.get("status")
    if status == "ok" and outcome in OK_OUTCOMES:
        entry.patch = record
        entry.patch_unsure = []
    elif status is None:
        entry.patch_unsure.append(record)


# ---------------------------------------------------------------------- judging


UNIT_SECONDS = {"days": 86400, "hours": 3600}


def _age(when: datetime | None, now: datetime, unit: str) -> float | None:
    if when is None:
        return None
    return round((now - when).total_seconds() / UNIT_SECONDS[unit], 1)


def _against(age: float, unit: str, limit: Limit, what: str, flags: list[str]) -> str:
    """OK, or BREACH with a flag that says by how much (`what` names the age, e.g. "last
    patch 40 days ago")."""
    if age * UNIT_SECONDS[unit] > limit.seconds:
        flags.append(f"{what}: over the limit of {limit.text()}")
        return BREACH
    return OK


def _ledger_time(text: str | None) -> datetime | None:
    """A time the ledger wrote (always UTC)."""
    if not text:
        return None
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _row(entry: _Host, thresholds: Thresholds, now: datetime) -> dict[str, Any]:
    flags: list[str] = []
    unknown: list[str] = []
    row: dict[str, Any] = {
        "host": entry.name,
        "in_inventory": entry.in_inventory,
        "recorded": entry.touched or entry.drill is not None,
    }
    if entry.in_inventory is False:
        flags.append("not in the inventory: only the thresholds for all hosts apply")
    if not row["recorded"]:
        flags.append("nothing recorded: no run in the ledger touched this host")
    flags += entry.notes
    row.update(_patch(entry, thresholds.patch, now, flags, unknown))
    row.update(_backup(entry, thresholds.backup, now, flags, unknown))
    row.update(_drill(entry, thresholds.drill, now, flags, unknown))
    row["failed_runs"] = entry.failed_runs
    row["unwrapped_runs"] = entry.unwrapped_runs
    if entry.unwrapped_runs:
        flags.append(
            f"{len(entry.unwrapped_runs)} run(s) started outside techops, with plain "
            f"ansible-playbook: {' '.join(entry.unwrapped_runs)}"
        )
    row["flags"] = flags
    row["unknown"] = unknown
    return row


def _patch(
    entry: _Host, limit: Limit, now: datetime, flags: list[str], unknown: list[str]
) -> dict[str, Any]:
    required = limit.applies_to(entry.groups)
    record = entry.patch
    found: dict[str, Any] = {
        "last_patch": record.run.end_time if record else None,
        "patch_run": record.run.run_id if record else None,
        "days_since_patch": None,
        "patch_status": NOT_REQUIRED,
        "pending_security_updates": None,
    }
    for unsure in entry.patch_unsure:
        flags.append(
            f"patch run {unsure.run.run_id}: whether it succeeded is unknown "
            "(its evidence has no usable status)"
        )
    if record is None:
        if required:
            found["patch_status"] = UNKNOWN if entry.patch_unsure else NEVER
            if not entry.patch_unsure:
                flags.append(f"never patched: no successful patch recorded (limit {limit.text()})")
        return found
    problems = _problems("patch", record)
    if problems:
        flags.append(problems)
    if record.reading.known("security_pending_after"):
        found["pending_security_updates"] = record.reading.get("security_pending_after")
    else:
        unknown.append("pending_security_updates")
    age = _age(_ledger_time(record.run.end_time), now, "days")
    found["days_since_patch"] = age
    if not required:
        return found
    if age is None:
        found["patch_status"] = UNKNOWN
        return found
    status = _against(age, "days", limit, f"last patch {age:g} days ago", flags)
    # A later run may have patched: what it did is not known, so neither is the breach.
    found["patch_status"] = UNKNOWN if status == BREACH and entry.patch_unsure else status
    return found


def _backup(
    entry: _Host, limit: Limit, now: datetime, flags: list[str], unknown: list[str]
) -> dict[str, Any]:
    required = limit.applies_to(entry.groups)
    record = entry.backup
    found: dict[str, Any] = {
        "last_backup": None,
        "backup_archive": None,
        "backup_run": record.run.run_id if record else None,
        "backup_age_hours": None,
        "backup_status": NOT_REQUIRED,
    }
    if record is None:
        if required:
            found["backup_status"] = NEVER
            flags.append(f"no backup recorded (limit {limit.text()})")
        return found
    reading = record.reading
    problems = _problems("backup", record)
    if problems:
        flags.append(problems)
    found["backup_archive"] = reading.get("archive") if reading.known("archive") else None
    if not reading.known("archive"):
        unknown.append("backup_archive")
    if reading.unreadable("archive_time") or not reading.mapping:
        # A time was published but is no date-time with a zone, or the record is no
        # mapping at all: what the repository holds, and so the age, is unknown.
        unknown += ["last_backup", "backup_age_hours"]
        found["backup_status"] = UNKNOWN if required else NOT_REQUIRED
        what = "the archive's time" if reading.mapping else "the record"
        flags.append(f"backup of run {record.run.run_id}: {what} is unreadable")
        return found
    if reading.get("archive_time") is None:  # null or missing: no archive is shown
        found["backup_status"] = NEVER if required else NOT_REQUIRED
        flags.append(
            f"no backup archive: run {record.run.run_id} found none in the repository"
            + (f" (limit {limit.text()})" if required else "")
        )
        return found
    found["last_backup"] = reading.get("archive_time")
    age = _age(moment(reading.get("archive_time")), now, "hours")
    found["backup_age_hours"] = age
    if not required:
        return found
    found["backup_status"] = (
        UNKNOWN
        if age is None
        else _against(age, "hours", limit, f"latest archive {age:g} h old", flags)
    )
    return found


def _drill(
    entry: _Host, limit: Limit, now: datetime, flags: list[str], unknown: list[str]
) -> dict[str, Any]:
    required = limit.applies_to(entry.groups)
    record = entry.drill
    found: dict[str, Any] = {
        "last_drill": None,
        "drill_run": record.run.run_id if record else None,
        "drill_standby": None,
        "drill_age_days": None,
        "drill_status": NOT_REQUIRED,
        "drill_rto_s": None,
        "drill_rto_target_s": None,
        "drill_rpo_s": None,
        "drill_rpo_target_s": None,
        "drill_passed": None,
    }
    if record is None:
        if required:
            found["drill_status"] = NEVER
            flags.append(
                f"never drilled: no restore of this system recorded (limit {limit.text()})"
            )
        return found
    reading = record.reading
    problems = _problems("drill", record)
    if problems:
        flags.append(problems)
    for column, key in (
        ("drill_standby", "standby"),
        ("last_drill", "started"),
        ("drill_rto_s", "rto_s"),
        ("drill_rto_target_s", "rto_target_s"),
        ("drill_rpo_s", "rpo_s"),
        ("drill_rpo_target_s", "rpo_target_s"),
        ("drill_passed", "passed"),
    ):
        if reading.known(key):
            found[column] = reading.get(key)
        else:
            unknown.append(column)
    age = _age(moment(found["last_drill"]), now, "days")
    found["drill_age_days"] = age
    if age is None:
        unknown.append("drill_age_days")
    passed = found["drill_passed"]
    if passed is False:
        found["drill_status"] = FAILED
        reason = reading.get("reason")
        flags.append(
            f"last drill (run {record.run.run_id}) failed" + (f": {reason}" if reason else "")
        )
        return found
    if not required:
        return found
    if passed is None or age is None:
        found["drill_status"] = UNKNOWN
        flags.append(
            f"last drill (run {record.run.run_id}): "
            + ("whether it passed" if passed is None else "when it ran")
            + " is unknown"
        )
    else:
        found["drill_status"] = _against(age, "days", limit, f"last drill {age:g} days ago", flags)
    return found


# ---------------------------------------------------------------------- the report


def _when(moment_: datetime) -> str:
    return moment_.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _since_text(since: str) -> str:
    """The start of the period as the title shows it: --since arrives as the ledger's ISO
    UTC text; anything else that compares with it (a bare year) is shown as given."""
    try:
        parsed = datetime.fromisoformat(since)
    except ValueError:
        return since
    return _when(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def compliance(
    ledger: Ledger,
    since: str | None = None,
    *,
    inventory: Inventory | None = None,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Per host: last successful patch, latest backup archive, latest drill of the system,
    failed runs since `since` (every run without it), each judged against the thresholds.
    With an inventory, every host of it is listed, recorded or not; hosts the ledger knows
    outside it are listed too, flagged."""
    thresholds = thresholds or Thresholds()
    now = now or datetime.now(UTC)
    runs = sorted(load_runs(ledger).values(), key=lambda r: r.start_time)
    hosts = _collect(runs, since, inventory)
    unwrapped = {
        "runs": [
            r.run_id for r in runs if r.unwrapped and (since is None or r.start_time >= since)
        ],
        # Plain ansible-playbook runs the ledger callback stopped before their first task
        # (a protected inventory): they changed nothing, and are counted apart.
        "refused": [
            e.run_id
            for e in ledger.entries(kinds=[CHANGE_DECISION])
            if e.body.get("unwrapped") is True
            and e.body.get("action") == "refuse"
            and (since is None or e.created >= since)
        ],
    }
    rows = [_row(hosts[name], thresholds, now) for name in sorted(hosts)]
    until = _when(now)
    if since:
        title = f"Compliance since {_since_text(since)} until {until}"
    else:
        title = f"Compliance, all records up to {until}"
    return {
        "title": title,
        "period": {"since": since, "until": now.isoformat(timespec="seconds")},
        "generated": now.isoformat(timespec="seconds"),
        "inventory": inventory.name if inventory else None,
        "thresholds": thresholds.as_dict(),
        "thresholds_text": {c: getattr(thresholds, c).text() for c in CHECKS},
        "hosts": rows,
        "flagged": sum(1 for row in rows if row["flags"]),
        "unwrapped": {
            **unwrapped,
            "count": len(unwrapped["runs"]),
            "refused_count": len(unwrapped["refused"]),
        },
        "ledger": verification(ledger.verify()),
    }


COMPLIANCE_COLUMNS = (
    "host",
    "last_patch",
    "days_since_patch",
    "patch_status",
    "pending_security_updates",
    "last_backup",
    "backup_age_hours",
    "backup_status",
    "backup_archive",
    "last_drill",
    "drill_age_days",
    "drill_status",
    "drill_standby",
    "drill_rto_s",
    "drill_rto_target_s",
    "drill_rpo_s",
    "drill_rpo_target_s",
    "drill_passed",
    "failed_runs",
    "unwrapped_runs",
    "in_inventory",
    "flags",
)


def _absent(row: dict[str, Any], column: str) -> str:
    """What an empty cell means, in words: a missing record is "never" (or "none
    recorded"), a null the evidence published keeps the meaning its declaration gives."""
    if column == "last_patch":
        return "never"
    if column == "pending_security_updates":
        return "not measured" if row["last_patch"] else ""
    if column == "last_backup":
        return "never" if row["backup_run"] else "none recorded"
    if column == "last_drill":
        return "not recorded" if row["drill_run"] else "never"
    if column in ("drill_rto_s", "drill_rpo_s"):
        return "not measured" if row["drill_run"] else ""
    return ""


def cells(row: dict[str, Any]) -> dict[str, Any]:
    """A row as every rendered format shows it: "unknown" where the evidence says nothing
    usable, words where a value is absent, numbers left as numbers."""
    shown: dict[str, Any] = {}
    for column in COMPLIANCE_COLUMNS:
        value = row[column]
        if column in row["unknown"]:
            shown[column] = "unknown"
        elif column in ("failed_runs", "unwrapped_runs"):
            shown[column] = " ".join(value)
        elif column == "flags":
            shown[column] = "; ".join(value)
        elif value is None:
            shown[column] = _absent(row, column)
        elif column == "drill_passed":
            shown[column] = "passed" if value else "failed"
        elif column == "in_inventory":
            shown[column] = "yes" if value else "no"
        else:
            shown[column] = value
    return shown


def compliance_report(
    ledger: Ledger,
    since: str | None,
    fmt: str,
    *,
    inventory: Inventory | None = None,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
) -> str:
    data = compliance(ledger, since, inventory=inventory, thresholds=thresholds, now=now)
    if fmt == "json":
        return to_json(data)
    shown = [cells(row) for row in data["hosts"]]
    if fmt == "csv":
        return to_csv(COMPLIANCE_COLUMNS, ([row[c] for c in COMPLIANCE_COLUMNS] for row in shown))
    data["hosts"] = [
        {**row, "cells": row_cells} for row, row_cells in zip(data["hosts"], shown, strict=True)
    ]
    if fmt == "md":
        return markdown("compliance.md.j2", data=data, findings=FINDINGS)
    return html("compliance.html.j2", data=data)
