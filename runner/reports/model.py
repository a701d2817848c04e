"""Runs as the ledger records them: what every report reads.

Reports read the ledger alone: an auditor can render and verify them on a machine without
Ansible or access to the hosts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.core.errors import UserError
from runner.ledger.store import Entry, Ledger, Verification

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


def get_run(ledger: Ledger, run_id: str) -> RunView:
    return find_run(load_runs(ledger), run_id, ledger)


def find_run(runs: dict[str, RunView], run_id: str, ledger: Ledger) -> RunView:
    """The run with this id, or the one run whose id starts with it."""
    if run_id in runs:
        return runs[run_id]
    matches = [r for r in runs if r.startswith(run_id)]
    if len(matches) == 1:
        return runs[matches[0]]
    if not matches:
        raise UserError(f"no run {run_id!r} in the ledger {ledger.where} (list them: techops runs)")
    raise UserError(f"run id {run_id!r} is ambiguous: {', '.join(sorted(matches)[:5])}")


def verification(verification: Verification) -> dict[str, Any]:
    return {
        "verified": verification.ok,
        "entries": verification.entries,
        "head_seq": verification.head_seq,
        "head_hash": verification.head_hash,
        "problem": verification.problem.reason if verification.problem else None,
        "checkpoints_checked": verification.checkpoints_checked,
    }
