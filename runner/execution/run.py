"""Running a playbook through ansible-runner, locally or on an execution node.

Everything that watches a run (the live progress, the ledger's recorder) is an `Observer`
that receives ansible-runner's events; the events and the `playbook_on_stats` event are the
record of a run, not the text ansible-playbook prints.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import ansible_runner

from runner.execution.remote import execute_remote
from runner.execution.request import (
    RC_ERROR,
    RC_HOST_FAILED,
    RC_HOST_UNREACHABLE,
    RC_INTERRUPTED,
    RC_OK,
    RC_TIMEOUT,
    RunRequest,
    RunResult,
)


class Observer(Protocol):
    """Something that watches a run: progress output, a recorder, a notifier."""

    def on_start(self, request: RunRequest) -> None: ...

    def on_event(self, event: dict[str, Any]) -> None: ...

    def on_finish(self, result: RunResult) -> None: ...


class _Cancel:
    """SIGINT/SIGTERM ask ansible-runner to stop; the run ends as 'canceled'."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.requested.is_set()

    def install(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._handle)
        return previous

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signum
        self.requested.set()


def execute(request: RunRequest, observers: Sequence[Observer] = ()) -> RunResult:
    """Run the playbook, feeding every event to the observers, and return the outcome."""
    started = datetime.now(UTC)
    for observer in observers:
        observer.on_start(request)

    final: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_stats":
            final.update(event.get("event_data") or {})
        for observer in observers:
            observer.on_event(event)
        return True

    kwargs = request.runner_kwargs()
    private = Path(kwargs["private_data_dir"])
    private.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Facts are the hosts' own data (environment, mounts, users): this user's only.
    facts = Path(kwargs["fact_cache"])
    for directory in (facts.parent, facts):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    cancel = _Cancel()
    previous = cancel.install() if threading.current_thread() is threading.main_thread() else {}
    try:
        if request.node is not None:
            result = execute_remote(request, request.node, on_event, cancel)
        else:
            request.write_extravars(private)
            result = ansible_runner.run(
                **request.runner_kwargs(),
                event_handler=on_event,
                cancel_callback=cancel,
            )
    finally:
        request.remove_extravars(private)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    status = result.status
    rc = result.rc if isinstance(result.rc, int) else _rc_from_stats(status, final)
    if status == "canceled":
        rc = RC_INTERRUPTED
    elif status == "timeout":
        rc = RC_TIMEOUT
    stats = _final_stats(result)
    outcome = RunResult(
        run_id=request.run_id,
        status=status,
        rc=rc,
        stats=stats,
        artifacts=_artifact_dir(result),
        started=started,
        finished=datetime.now(UTC),
    )
    for observer in observers:
        observer.on_finish(outcome)
    return outcome


def _rc_from_stats(status: str, stats: dict[str, Any]) -> int:
    """ansible-playbook's exit code, for a result that does not carry it (a remote run)."""
    if status == "successful":
        return RC_OK
    if stats.get("dark"):
        return RC_HOST_UNREACHABLE
    if stats.get("failures"):
        return RC_HOST_FAILED
    return RC_ERROR


def _artifact_dir(result: Any) -> Path | None:
    path = getattr(result, "artifact_dir", None) or getattr(
        getattr(result, "config", None), "artifact_dir", None
    )
    return Path(path) if path else None


def _final_stats(result: Any) -> dict[str, dict[str, int]]:
    """Per-host counters from the playbook_on_stats event."""
    # A remote run's result (ansible-runner's stream Processor) has no stats: the
    # recorder takes them from the playbook_on_stats event, as for every run.
    raw = getattr(result, "stats", None) or {}
    hosts: dict[str, dict[str, int]] = {}
    for counter, per_host in raw.items():
        if not isinstance(per_host, dict):
            continue
        for host, count in per_host.items():
            hosts.setdefault(host, {})[counter] = int(count)
    return hosts
