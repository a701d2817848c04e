"""The evidence each area publishes, declared once: what the recorder checks at the end of a
run and what every report reads.

Roles publish what they did with `set_stats` under `techops_evidence`, one mapping per area
and host. The declarations below follow what the task files publish, as ansible-core 2.19
hands it over (a templated value keeps its native type: a number stays a number):

- `patch`: roles/patch/tasks/evidence.yml, or roles/patch/tasks/gate.yml for a host the gate
  refused (status `refused`, fewer keys);
- `backup`: roles/backup/tasks/evidence.yml;
- `drill`: roles/dr_drill/tasks/result.yml;
- `access`: roles/vpn/tasks/evidence.yml and roles/mfa/tasks/evidence.yml, merged per host
  by the recorder (each role adds its own part: `vpn`, or `automation_exemption` and `mfa`);
- `base`: roles/base/tasks/evidence.yml;
- `backup_rollback`: playbooks/backup_rollback.yml;
- `backup_maintain`: playbooks/backup_maintain.yml;
- `hardening`: roles/hardening/tasks/evidence.yml.

tests/unit/ledger/test_evidence_schema.py reads those files and fails when one publishes
a key or a type its declaration does not have, so that a role and its declaration cannot
drift apart. An area without a declaration (a playbook's own) is recorded as published and
not checked: no report reads it.

Two uses, two strictnesses. `check` is for the recorder: every departure from the
declaration is a problem, recorded in the run's terminal entry and never fatal (evidence
that does not fit is still recorded as published). `read` is for reports: the evidence with
everything that does not fit left out, so that a report shows "unknown" where the evidence
says nothing usable, never a value of its own; it also reads the text forms of numbers and
booleans ("412.3", "True") that older ansible-core versions recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# ---------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Value:
    """A scalar of one of `kinds` (text, integer, number, boolean, timestamp,
    utc_timestamp), optionally one of `choices`. A timestamp is ISO 8601 text with its UTC
    offset: without one, the age of what it dates would depend on the reader's zone. A
    utc_timestamp may leave the offset out because its publisher writes UTC by
    construction (`now(utc=true).isoformat()` gives no offset); reading adds it."""

    kinds: tuple[str, ...]
    nullable: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Items:
    """A list whose every element fits `item`."""

    item: Spec
    nullable: bool = False


@dataclass(frozen=True)
class Names:
    """A mapping of free names (packages, users, tables) to values that fit `value`."""

    value: Spec
    nullable: bool = False


@dataclass(frozen=True)
class Record:
    """A mapping with these keys and no others; every key is required unless `optional`."""

    fields: Mapping[str, Spec]
    optional: frozenset[str] = frozenset()
    nullable: bool = False


@dataclass(frozen=True)
class Variants:
    """A mapping whose shape depends on the value of one key (`patch` by its `status`)."""

    key: str
    variants: Mapping[str, Record]
    nullable: bool = False


Spec = Value | Items | Names | Record | Variants


def text(*, nullable: bool = False, choices: tuple[str, ...] = ()) -> Value:
    return Value(("text",), nullable, choices)


def integer(*, nullable: bool = False) -> Value:
    return Value(("integer",), nullable)


def number(*, nullable: bool = False) -> Value:
    return Value(("number",), nullable)


def boolean(*, nullable: bool = False) -> Value:
    return Value(("boolean",), nullable)


def timestamp(*, nullable: bool = False) -> Value:
    return Value(("timestamp",), nullable)


def utc_timestamp(*, nullable: bool = False) -> Value:
    return Value(("utc_timestamp",), nullable)


def record(
    fields: Mapping[str, Spec], *, optional: tuple[str, ...] = (), nullable: bool = False
) -> Record:
    return Record(dict(fields), frozenset(optional), nullable)


TEXTS = Items(text())

# What apt_pending_updates found before the run, summed up by techops_patch_summary.
_PENDING_SUMMARY = record(
    {
        "total": integer(),
        "security": integer(),
        "regular": integer(),
        "held": TEXTS,
        "excluded": TEXTS,
        "by_origin": Names(record({"security": TEXTS, "regular": TEXTS})),
        "by_severity": record({"security": TEXTS, "regular": TEXTS}),
    },
    nullable=True,
)
# A host's health as techops_patch_health judges it.
_HEALTH = record(
    {
        "healthy": boolean(),
        "services": Names(text()),
        "probes": Items(
            record(
                {
                    "url": text(nullable=True),
                    "expected": integer(),
                    "status": integer(nullable=True),
                    "ok": boolean(),
                }
            )
        ),
        "problems": TEXTS,
    },
    nullable=True,
)

PATCH = Variants(
    "status",
    {
        # roles/patch/tasks/evidence.yml: the run went on (it may still have failed).
        **dict.fromkeys(
            ("ok", "failed"),
            record(
                {
                    "check_mode": boolean(),
                    "status": text(choices=("ok", "failed")),
                    "started": timestamp(nullable=True),
                    "finished": timestamp(),
                    "duration_s": number(),
                    "mode": text(),
                    "only_packages": TEXTS,
                    "excluded": TEXTS,
                    "held": TEXTS,
                    "window": record(
                        {
                            "enforced": boolean(),
                            "open": boolean(nullable=True),
                            "open_windows": TEXTS,
                            "frozen": boolean(nullable=True),
                            "freeze": text(nullable=True),
                        }
                    ),
                    "forced_reason": text(nullable=True),
                    "pending_before": _PENDING_SUMMARY,
                    "updates_selected": TEXTS,
                    "updates_applied": TEXTS,
                    "security_updates_applied": TEXTS,
                    # Null before: installed by the run; null after: removed by it.
                    "versions_before": Names(text(nullable=True)),
                    "versions_after": Names(text(nullable=True)),
                    "pending_after": integer(nullable=True),
                    "security_pending_after": integer(nullable=True),
                    "security_pending_after_packages": TEXTS,
                    "reboot_policy": text(),
                    "reboot_required": boolean(nullable=True),
                    "reboot_required_reasons": TEXTS,
                    "reboot_required_packages": TEXTS,
                    "rebooted": boolean(),
                    "reboot_s": integer(nullable=True),
                    "health_before": _HEALTH,
                    "health_after": _HEALTH,
                }
            ),
        ),
        # roles/patch/tasks/gate.yml: refused outside the window or in a freeze.
        "refused": record(
            {
                "check_mode": boolean(),
                "status": text(choices=("refused",)),
                "started": timestamp(),
                "window": record(
                    {
                        "enforced": boolean(),
                        "open": boolean(),
                        "next_open": timestamp(nullable=True),
                        "frozen": boolean(),
                        "freeze": text(nullable=True),
                    }
                ),
                "forced_reason": text(nullable=True),
            }
        ),
    },
)

BACKUP = record(
    {
        "client": text(),
        "server": text(),
        "repository": text(),
        "ran_now": boolean(),
        # The latest archive in the repository, whoever made it; null: the repository
        # holds none.
        "archive": text(nullable=True),
        "archive_time": timestamp(nullable=True),
        "age_s": integer(nullable=True),
        "archives": integer(),
        "files": integer(nullable=True),
        "bytes": integer(nullable=True),
        "paths": TEXTS,
        "databases": TEXTS,
        "retention": record({"daily": integer(), "weekly": integer(), "monthly": integer()}),
        # Every archive in the repository, oldest first: what the maintenance compares the
        # repository with before it prunes (runner/reports/archives.py). Absent in records
        # made before it was published.
        "listing": Items(record({"name": text(), "id": text()})),
    },
    optional=("listing",),
)

_RETENTION = record({"daily": integer(), "weekly": integer(), "monthly": integer()})
_ARCHIVES = Items(record({"name": text(), "id": text(), "time": text()}))

# playbooks/backup_maintain.yml: retention and compaction of one client's repository, run
# from the controller, refused over archives that vanished without a prune of ours.
BACKUP_MAINTAIN = record(
    {
        "client": text(),
        "server": text(),
        "repository": text(),
        "check_mode": boolean(),
        # The maintenance run the comparison started from; null: none on record yet.
        "baseline_run": text(nullable=True),
        # How many archives the ledger had seen since, and the runs that listed them.
        "expected": integer(),
        "seen_in_runs": TEXTS,
        "before": _ARCHIVES,
        "vanished": Items(record({"name": text(), "id": text()})),
        "unexplained": TEXTS,
        # Vanished archives an operator explained, and why (null: none explained).
        "accepted": TEXTS,
        "accepted_reason": text(nullable=True),
        "refused": boolean(),
        "pruned": TEXTS,
        "after": _ARCHIVES,
        "compacted": boolean(),
        "freed": text(nullable=True),
        "retention": _RETENTION,
    }
)

DRILL = record(
    {
        # The system drilled (its backup restored) and the standby it was restored onto.
        "source": text(),
        "standby": text(),
        "archive": text(nullable=True),
        "archive_time": timestamp(nullable=True),
        # roles/dr_drill/tasks/latest.yml: now(utc=true).isoformat(), UTC without an offset.
        "started": utc_timestamp(nullable=True),
        # Null: not measured (the drill stopped before the service was verified).
        "rto_s": number(nullable=True),
        "rpo_s": number(nullable=True),
        "rto_target_s": integer(),
        "rpo_target_s": integer(),
        "passed": boolean(),
        "reason": text(nullable=True),
        "files_verified": integer(),
        "files_total": integer(),
        "mismatches": Items(
            record(
                {
                    "path": text(),
                    "problem": text(choices=("missing", "size", "sha256")),
                    # A size or a sha256; the actual one is null for a missing file.
                    "expected": Value(("integer", "text")),
                    "actual": Value(("integer", "text"), nullable=True),
                }
            )
        ),
        # Rows per database table; null: the count could not be read.
        "db_rows": Names(integer(nullable=True)),
        "kept": boolean(),
    }
)

ACCESS = record(
    {
        "check_mode": boolean(),
        "users": Items(
            record(
                {
                    "name": text(),
                    "state": text(choices=("present", "absent")),
                    "vpn_peer": text(choices=("present", "absent")),
                    "vpn_address": text(nullable=True),
                    # Epoch seconds; null: no peer, or no handshake yet.
                    "last_handshake": integer(nullable=True),
                    "totp_enrolled": boolean(),
                }
            )
        ),
        "revoked": TEXTS,
        "vpn": record(
            {
                "role": text(choices=("gateway", "peer")),
                "interface": text(),
                "pool": text(),
                "address": text(),
                "public_key": text(nullable=True),
                "ssh_restricted_to": TEXTS,
            }
        ),
        "automation_exemption": record(
            {"user": text(), "addresses": TEXTS, "authentication_methods": text()}
        ),
        "mfa": record(
            {
                "authentication_methods": text(),
                "window_size": integer(),
                "rate_limit": text(),
                "code_reuse": text(),
                "scratch_codes": integer(),
                "nullok": boolean(),
            }
        ),
    },
    # The vpn role publishes `vpn`, the mfa role the other two; a host may run either.
    optional=("vpn", "automation_exemption", "mfa"),
)

BASE = record(
    {
        "check_mode": boolean(),
        "hostname": text(),
        "hostname_applied": boolean(),
        "timezone": text(),
        "chrony": record({"servers": TEXTS, "pools": TEXTS, "clock_control": boolean()}),
        "admin_users": record(
            {
                "present": TEXTS,
                "removed": TEXTS,
                "sudo": Names(text()),
                "ssh_keys": Names(integer()),
            }
        ),
        "ssh": record(
            {
                "hardening_applied": boolean(),
                "dropin": text(),
                "port": integer(),
                "password_authentication": boolean(),
                "kbd_interactive_authentication": boolean(),
                "permit_root_login": text(),
                "allow_users": TEXTS,
                "allow_groups": TEXTS,
            }
        ),
        "firewall": record(
            {
                "enabled": boolean(),
                "policy_inbound": text(choices=("drop", "unmanaged")),
                "tcp_ports": Items(integer()),
                "udp_ports": Items(integer()),
                "sources": TEXTS,
            }
        ),
        "journald": record({"storage": text(), "system_max_use": text()}),
        "node_exporter": record({"enabled": boolean(), "listen": text()}),
    }
)

BACKUP_ROLLBACK = record(
    {
        "client": text(),
        "dry_run": boolean(),
        "last_good": integer(nullable=True),
        "reason": text(),
        "dropped_transactions": TEXTS,
        "removed": TEXTS,
    }
)

# roles/hardening/tasks/evidence.yml: the OS baseline a host enforces, and what it skipped.
HARDENING = record(
    {
        "check_mode": boolean(),
        "in_container": boolean(),
        "sysctl": record(
            {
                "file": text(),
                "settings": Names(Value(("integer", "text"))),
                "set_live_now": TEXTS,
                "not_settable_here": TEXTS,
                "unknown_to_kernel": TEXTS,
            }
        ),
        "core_dumps_disabled": boolean(),
        "login_defs": record(
            {
                "umask": text(),
                "encrypt_method": text(choices=("YESCRYPT", "SHA512")),
                # login.defs' PASS_MAX_DAYS and the rest: a key named like a secret would
                # be redacted on the record.
                "max_days": integer(),
                "min_days": integer(),
                "warn_age": integer(),
            }
        ),
        # Password aging of the accounts that have a password.
        "aging": record({"existing_accounts": boolean(), "aged": TEXTS, "exempt": TEXTS}),
        "pam": record(
            {
                "pwquality": Names(Value(("integer", "boolean", "text"))),
                "faillock_deny": integer(),
                "faillock_unlock_time": integer(),
                "faillock_fail_interval": integer(),
                "faillock_even_deny_root": boolean(),
                "profiles": TEXTS,
                "protected_accounts": TEXTS,
            }
        ),
        "auditd": record(
            {
                "enabled": boolean(),
                "rules_file": text(),
                "loaded": boolean(),
                "watch_keys": TEXTS,
                "syscall_keys": TEXTS,
            }
        ),
        "cron_allow": TEXTS,
        "at_allow": TEXTS,
        "file_permissions": record({"enforced": TEXTS, "absent": TEXTS}),
        "modules": record({"disabled": TEXTS, "still_loaded": TEXTS}),
        "needrestart_restart": text(choices=("l", "i", "a")),
        "skipped": Items(record({"control": text(), "reason": text()})),
    }
)

AREAS: Mapping[str, Spec] = {
    "patch": PATCH,
    "backup": BACKUP,
    "drill": DRILL,
    "access": ACCESS,
    "base": BASE,
    "backup_rollback": BACKUP_ROLLBACK,
    "backup_maintain": BACKUP_MAINTAIN,
    "hardening": HARDENING,
}


# ---------------------------------------------------------------------- checking


def moment(value: Any) -> datetime | None:
    """A timestamp of the evidence as an aware datetime in UTC; None when the value is not
    ISO 8601 text with its UTC offset."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    return parsed.astimezone(UTC)


_KIND_WORDS = {
    "text": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "timestamp": "a date-time with its UTC offset",
    "utc_timestamp": "a date-time in UTC",
}
# What fits no spec: left out of what a report reads.
_UNFIT = object()


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(spec: Spec) -> str:
    if isinstance(spec, Value):
        words = (
            " or ".join(repr(c) for c in spec.choices)
            if spec.choices
            else " or ".join(_KIND_WORDS[k] for k in spec.kinds)
        )
    elif isinstance(spec, Items):
        words = "a list"
    else:
        words = "a mapping"
    return words + (" or null" if spec.nullable else "")


def _scalar(kind: str, value: Any, lenient: bool) -> Any:
    """The value as `kind`, or _UNFIT. Leniently, text that spells a number or a boolean
    (as older ansible-core versions recorded templated values) is read as what it spells."""
    if kind == "text":
        return value if isinstance(value, str) else _UNFIT
    if kind == "timestamp":
        return value if moment(value) is not None else _UNFIT
    if kind == "utc_timestamp":
        try:
            when = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            when = None
        if when is None:
            return _UNFIT
        if when.tzinfo is not None or not lenient:
            return value
        return when.replace(tzinfo=UTC).isoformat()  # what it means, said explicitly
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if lenient and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return _UNFIT
    if isinstance(value, bool):  # a bool is an int to Python, never a count to us
        return _UNFIT
    if kind == "integer":
        if isinstance(value, int):
            return value
        if lenient and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return _UNFIT
        return _UNFIT
    # number
    if isinstance(value, int | float):
        return value if math.isfinite(value) else _UNFIT
    if lenient and isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return _UNFIT
        return parsed if math.isfinite(parsed) else _UNFIT
    return _UNFIT


def _fit(spec: Spec, value: Any, path: str, problems: list[str], lenient: bool) -> Any:
    """The value as far as it fits the spec (a mapping keeps the keys that fit), or
    _UNFIT; every departure is added to `problems`."""
    where = f"{path}: " if path else ""
    if value is None:
        if spec.nullable:
            return None
        problems.append(f"{where}is null, expected {_expected(spec)}")
        return _UNFIT
    if isinstance(spec, Value):
        for kind in spec.kinds:
            found = _scalar(kind, value, lenient)
            if found is not _UNFIT and (not spec.choices or found in spec.choices):
                return found
        problems.append(f"{where}expected {_expected(spec)}, got {_shown(value)}")
        return _UNFIT
    if isinstance(spec, Items):
        if not isinstance(value, list):
            problems.append(f"{where}expected {_expected(spec)}, got {_shown(value)}")
            return _UNFIT
        items = [_fit(spec.item, v, f"{path}[{i}]", problems, lenient) for i, v in enumerate(value)]
        # One element that does not fit makes the whole list unknown: a report that
        # counted the others would state a count the evidence does not show.
        return _UNFIT if any(i is _UNFIT for i in items) else items
    if not isinstance(value, dict):
        problems.append(f"{where}expected {_expected(spec)}, got {_shown(value)}")
        return _UNFIT
    prefix = f"{path}." if path else ""
    if isinstance(spec, Names):
        names = {
            k: _fit(spec.value, v, f"{prefix}{k}", problems, lenient) for k, v in value.items()
        }
        return _UNFIT if any(v is _UNFIT for v in names.values()) else names
    if isinstance(spec, Variants):
        key = value.get(spec.key)
        chosen = spec.variants.get(key) if isinstance(key, str) else None
        if chosen is None:
            shown = _shown(value[spec.key]) if spec.key in value else "nothing"
            choices = " or ".join(repr(v) for v in spec.variants)
            problems.append(f"{prefix}{spec.key}: expected {choices}, got {shown}")
            return {}  # which shape applies is unknown, so is every value
        return _fit(chosen, value, path, problems, lenient)
    kept: dict[str, Any] = {}
    for key, inner in spec.fields.items():
        if key not in value:
            if key not in spec.optional:
                problems.append(f"{prefix}{key}: missing")
            continue
        found = _fit(inner, value[key], f"{prefix}{key}", problems, lenient)
        if found is not _UNFIT:
            kept[key] = found
    problems.extend(f"{prefix}{key}: not declared" for key in value if key not in spec.fields)
    return kept


def check(area: str, value: Any) -> list[str]:
    """Every way one area's evidence departs from its declaration; none for an area
    without one."""
    spec = AREAS.get(area)
    if spec is None:
        return []
    problems: list[str] = []
    _fit(spec, value, "", problems, lenient=False)
    return problems


def check_run(evidence: Mapping[str, Any]) -> list[dict[str, str]]:
    """The problems of a run's evidence ({host: {area: value}}), one {host, area, problem}
    each, in host and area order: what the recorder writes into the run's terminal entry."""
    found = []
    for host in sorted(evidence):
        areas = evidence[host]
        if not isinstance(areas, dict):
            found.append({"host": host, "area": "", "problem": "not a mapping of areas"})
            continue
        for area in sorted(areas):
            found += [
                {"host": host, "area": area, "problem": problem}
                for problem in check(area, areas[area])
            ]
    return found


@dataclass(frozen=True)
class Reading:
    """One area's evidence as a report may use it: `values` holds only what fits the
    declaration (a key that is absent is unknown; a key whose value is None was published
    as null, which the declaration gives a meaning), `problems` says what was left out."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    # Keys that were published but left out: their value is unreadable, not absent.
    left_out: frozenset[str] = frozenset()
    # Whether a mapping was published at all: if not, even an absent key says nothing.
    mapping: bool = True

    def known(self, key: str) -> bool:
        return key in self.values

    def unreadable(self, key: str) -> bool:
        return key in self.left_out

    def get(self, key: str) -> Any:
        return self.values.get(key)


def read(area: str, value: Any) -> Reading:
    """One area's evidence for a report: what fits its declaration, text forms of numbers
    and booleans read as what they spell, everything else left out and named."""
    spec = AREAS.get(area)
    if spec is None:
        return Reading(dict(value) if isinstance(value, dict) else {}, ())
    problems: list[str] = []
    found = _fit(spec, value, "", problems, lenient=True)
    values = found if isinstance(found, dict) else {}
    published = set(value) if isinstance(value, dict) else set()
    return Reading(
        values, tuple(problems), frozenset(published - set(values)), isinstance(value, dict)
    )


# How many problems the warning at the end of a run lists; its terminal entry holds them all.
WARN_PROBLEMS = 10


def problems_warning(run_id: str, problems: list[dict[str, str]]) -> str:
    """The warning printed once when a run's evidence departs from its declaration."""
    lines = [
        f"techops: warning: run {run_id} recorded evidence that does not match its "
        "declaration (runner/ledger/evidence.py); it is kept as published, and reports show "
        "what does not fit as unknown:"
    ]
    lines += [
        f"  {p['host']} {p['area'] or '(every area)'}: {p['problem']}"
        for p in problems[:WARN_PROBLEMS]
    ]
    if len(problems) > WARN_PROBLEMS:
        lines.append(
            f"  and {len(problems) - WARN_PROBLEMS} more, listed as evidence_problems in the "
            f"run's record (techops report {run_id} --format json)"
        )
    return "\n".join(lines)
