"""Scheduled jobs: one job fired through the gate, and the decisions it leaves.

`run_job` puts the gate in front of a recorded run (runner.execution.launch), records the
gate's decision for the job's due time, and sends the job's notifications. A due time is
decided once, whoever fires it (a timer, the scheduler, a catch-up after a restart).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.core.errors import UserError
from runner.core.inventory import host_groups
from runner.core.locks import FileLock
from runner.core.paths import state_dir
from runner.execution.launch import Why, run_recorded
from runner.execution.locks import HostBusy
from runner.execution.request import RunRequest
from runner.execution.vault import Vault
from runner.ledger.store import Entry, Ledger
from runner.scheduling import gate, notify
from runner.scheduling.gate import Decision
from runner.scheduling.model import Job, credential_name, load

DECISION = "schedule.decision"
# The extra var that carries a scheduled job's emergency override into its playbook.
OVERRIDE_VAR = "techops_override_reason"


class JobLock:
    """A job never overlaps with itself: held for the whole run of a scheduled job."""

    def __init__(self, name: str) -> None:
        self.lock = FileLock(state_dir() / "locks" / f"job-{name}.lock")

    def try_acquire(self, run_id: str) -> str | None:
        """None when acquired, else the run id of the holder."""
        holder = self.lock.acquire({"run_id": run_id, "pid": os.getpid()})
        return None if holder is None else str(holder.get("run_id", "unknown"))

    def release(self) -> None:
        self.lock.release()


def job_vault(job: Job, directory: Path) -> Vault:
    """The vault identities a job names, as password files ansible-playbook reads: the
    credentials systemd loaded for its unit ($CREDENTIALS_DIRECTORY, private to the
    service), else the controller's own files (a job fired by hand, as root)."""
    loaded = os.environ.get("CREDENTIALS_DIRECTORY")
    ids = []
    for label in job.vault_ids:
        candidates = [Path(loaded) / credential_name(label)] if loaded else []
        candidates.append(directory / label)
        found = next((p for p in candidates if p.is_file() and os.access(p, os.R_OK)), None)
        if found is None:
            raise UserError(
                f"job {job.name} needs the password of vault identity {label!r}: no systemd "
                f"credential {credential_name(label)} and {directory / label} is missing or "
                "unreadable (create it, mode 0600, then re-run `techops schedule install "
                "--systemd`)"
            )
        ids.append(f"{label}@{found}")
    return Vault(ids=tuple(ids))


def run_job(
    name: str,
    *,
    ledger: Ledger,
    now: datetime | None = None,
    scheduled_for: datetime | None = None,
    override_reason: str | None = None,
    schedules_path: Path | None = None,
) -> int:
    """Fire a scheduled job through the gate. Returns the exit code."""
    schedules = load(schedules_path)
    job = schedules.job(name)
    now = now or datetime.now(UTC)
    request = RunRequest.resolve(
        job,
        # An override reaches the playbook too, whose own gate (patch.yml's) would refuse
        # again otherwise: roles read it as techops_override_reason.
        extravars={**job.extra_vars, OVERRIDE_VAR: override_reason}
        if override_reason
        else job.extra_vars,
        timeout=int(job.max_runtime.total_seconds()) if job.max_runtime else None,
        vault=job_vault(job, schedules.vault_dir),
    )
    lock = JobLock(job.name)
    running = lock.try_acquire(request.run_id)
    try:
        groups = host_groups(request.inventory, job.limit) if job.changes_hosts else set()
        due = scheduled_for or job.last_fire(now)
        config = notify.settings(schedules.data.get("notify"), job.notify)
        # Reading what was decided for this due time and recording this decision are one
        # step: a timer and the scheduler firing together see each other's decision.
        with _deciding(job.name):
            earlier = (
                [] if override_reason or due is None else _decisions_for(ledger, job.name, due)
            )
            decision = gate.decide(
                schedules,
                job,
                now,
                groups,
                scheduled_for=due,
                override_reason=override_reason,
                running=running,
                already_fired=_fired_run(earlier),
            )
            if decision.action == "skip" and earlier and due is not None:
                # A second caller for a due time already decided: no second skip entry,
                # no second notification.
                print(
                    f"techops: job {job.name}: its start due at {due.isoformat()} was already "
                    f"decided ({_describe_decision(_first_decision(earlier))}): "
                    "nothing recorded again"
                )
                return 0
            record = {
                **decision.as_record(),
                "decided_at": now.isoformat(),
                "controller": socket.gethostname(),
                "run_id": request.run_id if decision.fires else None,
            }
            if not decision.fires:
                record["notifications"] = notify.send(config, decision.action, record)
                ledger.append(DECISION, f"job:{job.name}", record)
                print(f"techops: job {job.name}: {decision.action}: {decision.reason}")
                return 0 if decision.action == "skip" else 3
            if decision.override_reason:
                # An emergency override fires the job: someone should know, at once.
                record["notifications"] = notify.send(config, "override", record)
            ledger.append(DECISION, f"job:{job.name}", record)
        print(f"techops: job {job.name}: fired ({decision.reason}), run {request.run_id}")
        why = Why(reason=override_reason or f"scheduled job {job.name}", schedule=job.name)
        try:
            result = run_recorded(request, ledger, why)
        except HostBusy as busy:
            # Another run holds a host: this start is lost (its due time was decided), so
            # the run.refused entry alone is not enough; someone must know.
            refusal = {"job": job.name, "run_id": request.run_id, "reason": str(busy)}
            outcomes = notify.send(config, "refuse", refusal)
            ledger.append(
                "schedule.notified",
                f"job:{job.name}",
                {**refusal, "event": "refuse", "notifications": outcomes},
            )
            raise
        event = "success" if result.status == "successful" else "failure"
        payload = {
            "job": job.name,
            "run_id": result.run_id,
            "status": result.status,
            "rc": result.rc,
            "reason": f"run {result.status}",
        }
        outcomes = notify.send(config, event, payload)
        if outcomes:
            ledger.append(
                "schedule.notified",
                f"job:{job.name}",
                {
                    "job": job.name,
                    "run_id": result.run_id,
                    "event": event,
                    "notifications": outcomes,
                },
            )
        return result.rc
    finally:
        lock.release()


def _decisions_for(ledger: Ledger, job: str, due: datetime) -> list[Entry]:
    """The job's recorded decisions for this due time, oldest first. Due times are
    compared as instants, not as text: 02:30+01:00 on a spring-forward night and
    03:30+02:00 are the same start."""
    at = due.astimezone(UTC)
    found = []
    for entry in ledger.entries(kinds=[DECISION]):
        body = entry.body
        if body.get("job") != job or not isinstance(body.get("scheduled_for"), str):
            continue
        try:
            when = datetime.fromisoformat(body["scheduled_for"])
        except ValueError:
            continue
        if when.tzinfo is not None and when.astimezone(UTC) == at:
            found.append(entry)
    return found


def _fired_run(decisions: list[Entry]) -> str | None:
    """The run of the first of these decisions that fired, if one did (a scheduler
    restart, a clock jump, or a timer and a scheduler both firing must not run it twice)."""
    for entry in decisions:
        if entry.body.get("action") == "fire":
            return entry.body.get("run_id") or "an earlier run"
    return None


def _first_decision(decisions: list[Entry]) -> Entry:
    """The decision that settled a due time: its firing if it fired, else the first."""
    return next((e for e in decisions if e.body.get("action") == "fire"), decisions[0])


def _describe_decision(entry: Entry) -> str:
    """An earlier decision, for the line that says it stands: what, which ledger entry,
    which run."""
    body = entry.body
    run = f", run {body['run_id']}" if body.get("run_id") else ""
    at = f", at {body['decided_at']}" if body.get("decided_at") else ""
    return f"{body.get('action')} in ledger entry {entry.seq}{run}{at}"


@contextlib.contextmanager
def _deciding(job: str) -> Iterator[None]:
    """Held while a due time's decision is read and recorded, so that two callers on one
    controller cannot both find it undecided (the job lock is only tried, not waited for,
    and the run it guards lasts much longer)."""
    with FileLock(state_dir() / "locks" / f"job-{job}.decision.lock"):
        yield


def record_skip(
    ledger: Ledger, job: str, due: datetime, reason: str, now: datetime
) -> Entry | None:
    """Record a due time the scheduler will not fire (passed over by a clock jump) as a
    skip decision, as the gate would have: the new entry, or None when that due time was
    already decided (it is never recorded twice)."""
    with _deciding(job):
        if _decisions_for(ledger, job, due):
            return None
        record = {
            **Decision("skip", reason, job, due).as_record(),
            "decided_at": now.isoformat(),
            "controller": socket.gethostname(),
            "run_id": None,
            "notifications": [],
        }
        return ledger.append(DECISION, f"job:{job}", record)


def decisions(ledger: Ledger, job: str | None = None) -> list[dict[str, Any]]:
    found = []
    for entry in ledger.entries(kinds=[DECISION]):
        if job is None or entry.body.get("job") == job:
            found.append({**entry.body, "seq": entry.seq, "recorded": entry.created})
    return found
