"""Retention of what runs leave behind.

ansible-runner's artifacts (events, stdout) are kept on disk for the newest N runs and for
D days; older run directories are removed. Ledger entries are never removed: pruning the
stored per-event detail of old runs appends a tombstone entry that names what was pruned,
so the chain stays whole and the run records keep their event digests.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

from runner.core.errors import UserError
from runner.ledger.store import PRUNED, TERMINAL_KINDS, Entry, Ledger

DEFAULT_KEEP_RUNS = 100
DEFAULT_KEEP_DAYS = 30


@dataclass(frozen=True)
class Policy:
    keep_runs: float | None = DEFAULT_KEEP_RUNS
    keep_days: float | None = DEFAULT_KEEP_DAYS

    @classmethod
    def from_env(cls) -> Policy:
        def number(name: str, default: float, kind: type) -> float | None:
            raw = os.environ.get(name)
            if raw is None:
                return default
            if raw.strip().lower() in ("", "0", "none", "off"):
                return None
            try:
                value = kind(raw)
            except ValueError:
                raise UserError(f"{name}={raw!r} is not a number (or 'off')") from None
            if value < 0:
                raise UserError(f"{name} must not be negative")
            return value

        return cls(
            number("TECHOPS_KEEP_RUNS", DEFAULT_KEEP_RUNS, int),
            number("TECHOPS_KEEP_DAYS", DEFAULT_KEEP_DAYS, float),
        )


def prune_artifacts(
    runs_dir: Path, policy: Policy, *, keep: Set[str] = frozenset(), now: float | None = None
) -> list[str]:
    """Remove run directories the policy no longer keeps. Returns the removed run ids."""
    if not runs_dir.is_dir():
        return []
    now = time.time() if now is None else now
    dirs = sorted(
        (p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True
    )  # run ids sort by time: newest first
    removed = []
    for index, path in enumerate(dirs):
        if path.name in keep:
            continue
        too_many = policy.keep_runs is not None and index >= policy.keep_runs
        too_old = (
            policy.keep_days is not None and now - path.stat().st_mtime > policy.keep_days * 86400
        )
        if too_many or too_old:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def prune_detail(ledger: Ledger, before: str) -> dict | None:
    """Drop stored event detail of runs that ended before `before`; record a tombstone."""
    pruned = {}
    already = set()
    for entry in ledger.entries(kinds=[PRUNED]):
        already |= set(entry.body.get("runs", {}))
    for run_id, end in _ended_runs(ledger).items():
        if end.created >= before or run_id in already:
            continue
        events = end.body.get("events") or {}
        pruned[run_id] = {
            "events": events.get("count"),
            "sha256": events.get("sha256"),
            "finished_entry": end.seq,
        }
    if not pruned:
        return None
    body = {
        "before": before,
        "runs": pruned,
        "rows_deleted": sum(v["events"] or 0 for v in pruned.values()),
        "detail": "per-event detail removed by retention; run records are untouched",
    }
    # The tombstone and the removal it records are one transaction.
    ledger.append(PRUNED, "retention", body, drop_events_of=pruned)
    return body


def _ended_runs(ledger: Ledger) -> dict[str, Entry]:
    """The terminal entry of every run that has one, by run id: its first, the only one
    that counts (`verify` names any later one as a forgery)."""
    started: set[str] = set()
    ended: dict[str, Entry] = {}
    for entry in ledger.entries(kinds=["run.started", *TERMINAL_KINDS]):
        if entry.kind == "run.started":
            started.add(entry.run_id)
        elif entry.run_id in started:
            ended.setdefault(entry.run_id, entry)
    return ended
