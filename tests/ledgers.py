"""Ledgers seeded with runs, as the recorder writes them, for the report and CLI tests."""

from __future__ import annotations

from runner.ledger.store import canonical, chain, events_digest

# The seal of a run that stored no event rows, as the recorder writes it.
NO_EVENTS = {"count": 0, "sha256": events_digest([])}


def add_run(
    ledger,
    run_id,
    hosts,
    evidence=None,
    status="successful",
    playbook="site.yml",
    check=False,
    failed_tasks=(),
    unwrapped=False,
    who=None,
    locked=None,
):
    """A run as the recorder writes it: started by `who` (alice, else e.g. a schedule's
    {"kind": "schedule", "name": JOB}), with the hosts it `locked`, ended with `status` and
    each host's outcome."""
    started = {
        "run_id": run_id,
        "playbook": playbook,
        "who": who or {"kind": "user", "name": "alice"},
        "inventory": {"source": "inv", "sha256": "0" * 64},
        "git": {"commit": "abc", "dirty": False},
        "versions": {},
        "check": check,
        "controller": {"host": "ctl"},
        "unwrapped": unwrapped,
    }
    if locked is not None:
        started["hosts"] = list(locked)
    ledger.append("run.started", run_id, started)
    ledger.append(
        "run.finished",
        run_id,
        {
            "run_id": run_id,
            "status": status,
            "rc": 0 if status == "successful" else 2,
            "hosts": {h: {"outcome": o, "ok": 1} for h, o in hosts.items()},
            "failed_tasks": list(failed_tasks),
            "changed_tasks": [],
            "evidence": evidence or {},
            "events": NO_EVENTS,
        },
    )


def drill_evidence(**changes):
    """What dr_drill's result.yml publishes for a passed drill of app1 onto standby1."""
    return {
        "source": "app1",
        "standby": "standby1",
        "archive": "app1-2026-11-21T01:00:00",
        "archive_time": "2026-11-21T01:00:00+00:00",
        "started": "2026-11-21T03:30:00+00:00",
        "rto_s": 95.2,
        "rpo_s": 9000.0,
        "rto_target_s": 900,
        "rpo_target_s": 93600,
        "passed": True,
        "reason": None,
        "files_verified": 120,
        "files_total": 120,
        "mismatches": [],
        "db_rows": {"appdb.items": 42},
        "kept": False,
        **changes,
    }


def add_drill(ledger, run_id, status="successful", check=False, host="standby1", **changes):
    add_run(
        ledger,
        run_id,
        {host: "ok" if status == "successful" else "failed", "backup1": "ok"},
        {host: {"drill": drill_evidence(standby=host, **changes)}},
        status=status,
        playbook="playbooks/dr_drill.yml",
        check=check,
    )


def forge(ledger, kind, run_id, body):
    """Append an entry as someone with write access to the database can: chained exactly
    as Ledger.append chains it (store.chain), without its refusals. Returns its seq."""
    with ledger.engine.connect().execution_options(techops_write=True) as conn, conn.begin():
        seq, *_ = chain(conn, kind, run_id, canonical(body))
    return seq
