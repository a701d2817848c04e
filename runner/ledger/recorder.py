"""The recorder: turns a run's ansible-runner events into ledger entries.

A run is two chained entries: `run.started`, written before ansible-playbook starts, and
a terminal one (`run.finished`, or `run.interrupted` when the process died before it
could write one; see `reap_interrupted`). Between them, the run's redacted events are
stored in batches as detail, and the terminal entry seals them. The source of truth is the
events and the `playbook_on_stats` event, never stdout.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import yaml

from runner.core.identity import real_user
from runner.core.inventory import inventory_digest
from runner.core.paths import repo_relative, repo_root, state_dir
from runner.ledger.evidence import check_run, problems_warning
from runner.ledger.redact import Redactor
from runner.ledger.store import (
    TERMINAL_KINDS,
    Ledger,
    RunAlreadyEnded,
    canonical,
    event_row_hash,
    events_digest,
)

if TYPE_CHECKING:  # the recorder watches runs; it needs their types, not their code
    from runner.execution.request import RunRequest, RunResult

BATCH_ROWS = 2000
BATCH_SECONDS = 1.0
MESSAGE_LIMIT = 2000
SET_STATS = {"set_stats", "ansible.builtin.set_stats", "ansible.legacy.set_stats"}


# ---------------------------------------------------------------------- run context


def git_state(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def versions(root: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for dist in ("ansible-core", "ansible", "ansible-runner"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    collections: dict[str, str | None] = {}
    try:
        requirements = root / "collections" / "requirements.yml"
        wanted = yaml.safe_load(requirements.read_text()).get("collections", [])
    except (OSError, AttributeError, yaml.YAMLError):
        wanted = []
    try:
        import ansible_collections  # shipped by PyPI's `ansible` package
    except ImportError:  # ansible-core alone: no collections installed
        bases = []
    else:
        bases = [Path(p) for p in ansible_collections.__path__]
    for item in wanted:
        name = item["name"] if isinstance(item, dict) else str(item)
        namespace, _, collection = name.partition(".")
        version = None
        for base in bases:
            manifest = base / namespace / collection / "MANIFEST.json"
            if manifest.is_file():
                version = json.loads(manifest.read_text())["collection_info"]["version"]
                break
        collections[name] = version
    found["collections"] = collections
    return found


def who(schedule: str | None) -> dict[str, Any]:
    """Who started the run: the scheduled job that fired it, or the user (as the kernel
    knows them, never as LOGNAME or USER say: see runner.core.identity). A scheduled run
    also records the user the scheduler runs as."""
    if schedule:
        return {"kind": "schedule", "name": schedule, "user": real_user()}
    return real_user()


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process: with the pid it names one process for sure."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


# ---------------------------------------------------------------------- outcome


# A host's outcome from its playbook_on_stats counters: the first counter it has, in this
# order (an unreachable host may also have ok tasks; a changed one always has).
OUTCOMES = (
    ("dark", "unreachable"),
    ("failures", "failed"),
    ("rescued", "rescued"),
    ("changed", "changed"),
    ("ok", "ok"),
    ("skipped", "skipped"),
)


def host_outcome(counters: dict[str, int]) -> str:
    return next((outcome for counter, outcome in OUTCOMES if counters.get(counter)), "ok")


def _message(res: dict[str, Any]) -> str:
    if res.get("censored"):
        return res["censored"]
    parts = [res.get("msg"), res.get("reason"), res.get("stderr")]
    text = " ".join(str(p) for p in parts if p) or "failed"
    return text[:MESSAGE_LIMIT]


class Recorder:
    """An Observer (see runner.execution.run) that writes the run into the ledger as it happens."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        redactor: Redactor | None = None,
        reason: str | None = None,
        ticket: str | None = None,
        schedule: str | None = None,
        hosts: list[str] | None = None,
        unwrapped: str | None = None,
    ) -> None:
        self.ledger = ledger
        # How a run techops did not start was started (runner.scheduling.unwrapped): the
        # ledger callback records plain ansible-playbook runs through this recorder.
        self.unwrapped = unwrapped
        self.reason = reason
        self.ticket = ticket
        self.schedule = schedule
        self.hosts = hosts
        self.request: RunRequest | None = None
        self.redactor = redactor or Redactor()
        self.redactor_given = redactor is not None
        self.rows: list[dict[str, Any]] = []
        self.row_hashes: list[tuple[int, str]] = []
        self.last_flush = time.monotonic()
        self.failed_tasks: list[dict[str, Any]] = []
        self.changed_tasks: list[dict[str, Any]] = []
        self.evidence: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, dict[str, int]] = {}
        self.event_count = 0
        self.started = False
        self.finished = False

    # Observer ---------------------------------------------------------------------
    def on_start(self, request: RunRequest) -> None:
        self.request = request
        # Where this run is recorded, for the ledger callback in its ansible-playbook: it
        # finds the run open there and does not record it again.
        request.ledger_url = absolute_url(self.ledger.url)
        if not self.redactor_given:
            self.redactor = Redactor.for_run(request.extravars)
        root = repo_root()
        body = {
            "run_id": request.run_id,
            "who": who(self.schedule),
            "controller": {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "pid_start": process_start(os.getpid()),
            },
            "playbook": repo_relative(request.playbook, root),
            "inventory": {
                "source": repo_relative(Path(request.inventory), root)
                if Path(request.inventory).exists()
                else request.inventory,
                "sha256": inventory_digest(request.inventory),
            },
            "limit": request.limit,
            "tags": request.tags,
            "skip_tags": request.skip_tags,
            "check": request.check,
            "diff": request.diff,
            "extra_vars": self.redactor.data(request.extravars),
            # Free text a user typed: a pasted secret is scrubbed like any other.
            "reason": self.redactor.text(self.reason) if self.reason else self.reason,
            "ticket": self.redactor.text(self.ticket) if self.ticket else self.ticket,
            "git": git_state(root),
            "versions": versions(root),
            "hosts": self.hosts,
            "node": getattr(request.node, "name", None),
            # Started outside techops (plain ansible-playbook), and so outside its gate.
            "unwrapped": self.unwrapped is not None,
        }
        if self.unwrapped is not None:
            body["unwrapped_detail"] = self.redactor.text(self.unwrapped)
        self.ledger.append("run.started", request.run_id, body)
        self.started = True

    def on_event(self, event: dict[str, Any]) -> None:
        clean = self.redactor.event(event)
        kind = clean.get("event", "")
        data = clean.get("event_data") or {}
        host = data.get("host")
        self.event_count += 1
        summary = self._summarise(kind, data)
        row = {
            "run_id": self.request.run_id if self.request else "",
            "counter": int(clean.get("counter") or self.event_count),
            "event": kind,
            "host": host,
            "data": canonical(summary),
        }
        self.rows.append(row)
        self.row_hashes.append(
            (row["counter"], event_row_hash(row["counter"], kind, host, row["data"]))
        )
        if kind == "playbook_on_stats":
            self._take_stats(data)
        if len(self.rows) >= BATCH_ROWS or time.monotonic() - self.last_flush > BATCH_SECONDS:
            self.flush()

    def on_finish(self, result: RunResult) -> None:
        self.finish(result.status, result.rc, result.stats, result)

    # Recording --------------------------------------------------------------------
    def _summarise(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        for key in ("play", "task", "role", "task_action", "resolved_action", "task_path"):
            if data.get(key):
                summary[key] = data[key]
        res = data.get("res")
        if not isinstance(res, dict):
            return summary
        host = data.get("host")
        entry = {
            "host": host,
            "task": data.get("task"),
            "role": data.get("role"),
            "action": data.get("resolved_action") or data.get("task_action"),
        }
        summary["changed"] = bool(res.get("changed"))
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            summary["msg"] = _message(res)
            self.failed_tasks.append({**entry, "msg": summary["msg"]})
        elif kind == "runner_on_unreachable":
            summary["msg"] = _message(res)
            self.failed_tasks.append({**entry, "msg": summary["msg"], "unreachable": True})
        elif kind == "runner_on_ok":
            if res.get("changed"):
                self.changed_tasks.append(entry)
            action = entry["action"] or ""
            stats = res.get("ansible_stats")
            if action in SET_STATS and isinstance(stats, dict):
                self._take_evidence(host, stats)
        if data.get("duration") is not None:
            summary["duration"] = data["duration"]
        return summary

    def _take_evidence(self, host: str | None, stats: dict[str, Any]) -> None:
        published = stats.get("data") or {}
        evidence = published.get("techops_evidence", published)
        if not isinstance(evidence, dict):
            return
        target = host if stats.get("per_host") and host else "_run"
        merged = self.evidence.setdefault(target, {})
        for area, values in evidence.items():
            if isinstance(values, dict) and isinstance(merged.get(area), dict):
                merged[area] = {**merged[area], **values}
            else:
                merged[area] = values

    def _take_stats(self, data: dict[str, Any]) -> None:
        for counter in (
            "ok",
            "changed",
            "failures",
            "dark",
            "skipped",
            "rescued",
            "ignored",
            "processed",
        ):
            for host, count in (data.get(counter) or {}).items():
                self.stats.setdefault(host, {})[counter] = int(count)

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        self.last_flush = time.monotonic()
        if rows:
            self.ledger.add_events(rows)

    def finish(
        self,
        status: str,
        rc: int,
        stats: dict[str, dict[str, int]] | None = None,
        result: RunResult | None = None,
    ) -> None:
        """Write the terminal entry. Idempotent: a second call does nothing."""
        if self.finished or not self.started or self.request is None:
            return
        self.finished = True
        self.flush()
        stats = self.stats or stats or {}
        body = {
            "run_id": self.request.run_id,
            "status": status,
            "rc": rc,
            "hosts": {host: {"outcome": host_outcome(c), **c} for host, c in sorted(stats.items())},
            "failed_tasks": self.failed_tasks,
            "changed_tasks": self.changed_tasks,
            "evidence": self.evidence,
            "events": {"count": len(self.row_hashes), "sha256": events_digest(self.row_hashes)},
        }
        if result is not None:
            body["duration_s"] = round((result.finished - result.started).total_seconds(), 3)
        # Evidence that departs from its declaration is recorded as published, with what
        # does not fit named beside it: never a reason to lose the run's record.
        evidence_problems = check_run(self.evidence)
        if evidence_problems:
            body["evidence_problems"] = evidence_problems
        self.ledger.append("run.finished", self.request.run_id, body)
        if evidence_problems:
            # Once, on stderr (the terminal, or a scheduled job's journal): a role's drift is
            # seen when it happens, not when an auditor reads a report.
            print(problems_warning(self.request.run_id, evidence_problems), file=sys.stderr)
        if result is not None and result.artifacts is not None:
            # The artifacts kept on disk get the same redaction as the ledger.
            self.redactor.tree(result.artifacts.parent.parent)


def absolute_url(url: str) -> str:
    """The ledger's URL as another process, in another working directory, opens the same
    ledger with: a relative SQLite path made absolute (ansible-playbook runs in the
    project directory, techops wherever it was started)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return url
    database = parsed.database or ""
    if (
        parsed.get_backend_name() != "sqlite"
        or database in ("", ":memory:")
        or database.startswith("file:")
        or Path(database).is_absolute()
    ):
        return url
    return parsed.set(database=str(Path(database).resolve())).render_as_string(hide_password=False)


def open_runs(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """Runs with a `run.started` entry and no terminal entry: running, or dead."""
    return {e.run_id: e.body for e in ledger.unclosed("run.started", TERMINAL_KINDS)}


def reap_interrupted(ledger: Ledger) -> list[str]:
    """Mark as interrupted the open runs of this controller whose process is gone.

    The `run.interrupted` entry seals the run's events as stored when it is written: the
    process that would have sealed them is dead, so no row can legitimately arrive later,
    and without a seal the rows of every killed run could be edited or deleted unseen. What
    the dead process never flushed was never stored; what was stored before the reaper
    came is what the seal vouches for."""
    here = socket.gethostname()
    reaped = []
    for run_id, body in open_runs(ledger).items():
        controller = body.get("controller") or {}
        if controller.get("host") != here:
            continue
        pid = controller.get("pid")
        alive = isinstance(pid, int) and process_start(pid) == controller.get("pid_start")
        if alive:
            continue
        body = {
            "run_id": run_id,
            "status": "interrupted",
            "detail": "the techops process ended before it recorded the run's end "
            "(killed, crashed, or the machine stopped)",
        }
        artifacts = _unscrubbed_artifacts(run_id)
        if artifacts is not None:
            body["artifacts"] = (
                "removed: they were never scrubbed of secrets; the run's redacted "
                "events up to its end are in the ledger"
            )
        try:
            ledger.append("run.interrupted", run_id, body, seal_stored_events=True)
        except RunAlreadyEnded:
            # It wrote its own end after we listed it, then exited: that end stands, and
            # its artifacts were scrubbed.
            continue
        if artifacts is not None:
            shutil.rmtree(artifacts, ignore_errors=True)
        reaped.append(run_id)
    return reaped


def _unscrubbed_artifacts(run_id: str) -> Path | None:
    """A dead run's ansible-runner artifacts, to be removed. Only the end of a run scrubs
    them, and the values to scrub (its extra vars, what its tasks returned) died with the
    process."""
    path = state_dir() / "runs" / run_id
    if not path.is_dir() or not run_id or "/" in run_id or run_id.startswith("."):
        return None
    return path
