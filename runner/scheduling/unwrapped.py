"""Runs outside the wrapper: a plain `ansible-playbook` run, judged and recorded from inside
Ansible by the callback plugin techops.ops.techops_ledger (enabled in ansible.cfg).

`techops run` is the path that gates protected environments and records every run; plain
ansible-playbook bypasses it. The callback puts such a run back on the record, as techops
would have:

- a run `techops run` started is recorded by techops, once: the callback recognises it by
  the marker the wrapper sets (RUN_MARKER, naming the run) and stays quiet, but only when
  the ledger holds that run open and the process that opened it is an ancestor of this
  ansible-playbook. A marker exported in another shell, or left over from a finished run,
  is not taken: that run is recorded as unwrapped, saying why the marker was not taken;
- a run against a protected environment (environments.yml) is refused before its first
  task, and the refusal recorded, unless it is in check mode, which `techops run` admits
  too; when the ledger or environments.yml cannot be read, a run that may be protected
  is refused (fail closed) and any other one warns and goes on unrecorded;
- every other run is recorded through the same Recorder and Redactor as `techops run`,
  its run.started entry marked `unwrapped`.

This module decides and records; the callback translates Ansible's calls into the events
ansible-runner would have delivered, and stops the process when a run is refused.

The marker protects against accidents, and gives a record of every run made with this
checkout's Ansible. It does not stop someone who means to get round it: whoever edits
ansible.cfg, sets ANSIBLE_CALLBACKS_ENABLED, or runs another installation of Ansible that
cannot import techops, runs unrecorded and ungated.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.core.errors import UserError
from runner.core.identity import real_user
from runner.core.paths import repo_root
from runner.execution.request import (
    RC_ERROR,
    RC_HOST_FAILED,
    RC_HOST_UNREACHABLE,
    RC_OK,
    RUN_MARKER,
    RunRequest,
    RunResult,
    new_run_id,
)
from runner.ledger.recorder import Recorder, process_start
from runner.ledger.redact import Redactor, secret_values
from runner.ledger.store import TERMINAL_KINDS, Ledger, ledger_url
from runner.scheduling import changes, environments
from runner.scheduling.environments import Environment, environment_of

# What the callback does with a run.
QUIET = "quiet"  # techops records it (or nothing can be said of it): the callback does nothing
RECORD = "record"  # recorded as an unwrapped run
UNRECORDED = "unrecorded"  # not protected, and the ledger cannot be opened: a warning, then run
REFUSE = "refuse"  # stopped before its first task

# As runner.scheduling.protect writes and exits (a unit test keeps them equal): not
# imported, since this module is imported by every ansible-playbook run, and protect
# brings the whole of running a playbook with it.
CHANGE_DECISION = "change.decision"
EXIT_REFUSED = 3  # a refused run, as for a run the gate of `techops run` refuses
# How the run.started entry of an unwrapped run says how it was started.
STARTED_WITH = "plain ansible-playbook, outside techops (not through `techops run`)"


@dataclass(frozen=True)
class Invocation:
    """A plain ansible-playbook run, as its command line and ansible.cfg define it."""

    playbook: Path
    inventories: tuple[str, ...]
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    check: bool = False
    diff: bool = False
    forks: int | None = None
    verbosity: int = 0

    @property
    def inventory(self) -> str:
        """The inventory as the record names it: its source, or every source (`-i` given
        more than once) separated by commas."""
        return ",".join(self.inventories)


@dataclass
class Decision:
    """What to do with a run, and what the callback says about it."""

    action: str
    ledger: Ledger | None = None
    environment: Environment | None = None
    # REFUSE, UNRECORDED: the line to show; RECORD: why a marker given was not taken.
    said: str | None = None
    run_id: str = field(default_factory=new_run_id)


def decide(invocation: Invocation, environ: Mapping[str, str]) -> Decision:
    """Quiet for a run techops records, else refuse or record it (see the module's doc)."""
    ledger, unusable = _open_ledger()
    marker = environ.get(RUN_MARKER)
    not_taken = None
    if marker:
        not_taken = marker_refused(ledger, marker) if ledger else f"the ledger: {unusable}"
        if not_taken is None:
            return Decision(QUIET, ledger, said=f"recorded by techops as run {marker}")
        not_taken = f"{RUN_MARKER}={marker} was not taken: {not_taken}"
    try:
        declared = environments.load()
    except UserError as exc:
        # Which inventories are protected cannot be told: fail closed, as `techops run`
        # does (it stops on the same error).
        said = f"cannot tell whether {invocation.inventory} is protected: {exc}"
        return Decision(REFUSE, ledger, said=said)
    environment = protected_environment(invocation.inventories, declared)
    if ledger is None:
        if environment is not None:
            said = (
                f"inventory {invocation.inventory} is in protected environment "
                f"{environment.name!r} and the ledger cannot be opened ({unusable}): nothing "
                "runs there unrecorded"
            )
            return Decision(REFUSE, None, environment, said)
        said = f"this run is not recorded: {unusable}"
        return Decision(UNRECORDED, None, said=said)
    if environment is not None and not invocation.check:
        how = (
            "--change ID, a change approved with `techops change`"
            if environment.approvals
            else "--reason and --ticket, inside its windows"
        )
        said = (
            f"inventory {invocation.inventory} is in protected environment "
            f"{environment.name!r}: a run that can change it must go through `techops run` "
            f"({how}); plain ansible-playbook may only look (--check)"
        )
        return Decision(REFUSE, ledger, environment, said)
    if environment is not None:
        # Looking is allowed as through `techops run`: committed content only, from the
        # repository's own roles and plugins.
        tampered = changes.content_overrides(os.environ)
        refused = (
            f"{', '.join(tampered)} would change what runs" if tampered else None
        ) or changes.check_refused(invocation.playbook)
        if refused:
            said = (
                f"inventory {invocation.inventory} is in protected environment "
                f"{environment.name!r}: {refused}"
            )
            return Decision(REFUSE, ledger, environment, said)
    return Decision(RECORD, ledger, environment, not_taken)


def _open_ledger() -> tuple[Ledger | None, str | None]:
    """The ledger `techops` would use (TECHOPS_LEDGER, else the controller's own), or why
    it cannot be opened."""
    try:
        return Ledger.open(ledger_url(), create=True), None
    except UserError as exc:
        return None, str(exc)


def protected_environment(
    inventories: tuple[str, ...], declared: list[environments.Environment]
) -> Environment | None:
    """The protected environment one of the run's inventory sources belongs to, if any."""
    for inventory in inventories:
        environment = environment_of(inventory, declared)
        if environment is not None and environment.protected:
            return environment
    return None


def marker_refused(ledger: Ledger, run_id: str) -> str | None:
    """None when `run_id` names a run this ledger holds open that was started on this
    machine by a process this one descends from (the techops process that runs this
    ansible-playbook); otherwise why the marker is not taken."""
    entries = list(ledger.entries(run_id=run_id))
    started = next((e for e in entries if e.kind == "run.started"), None)
    if started is None:
        return f"no run {run_id} in the ledger {ledger.where}"
    if any(e.kind in TERMINAL_KINDS for e in entries):
        return f"run {run_id} has already ended"
    controller = started.body.get("controller") or {}
    if controller.get("host") != socket.gethostname():
        return f"run {run_id} was started on {controller.get('host')}, not on this machine"
    pid = controller.get("pid")
    if not isinstance(pid, int) or pid not in ancestors(os.getpid()):
        return f"run {run_id} was started by process {pid}, which did not start this one"
    if process_start(pid) != controller.get("pid_start"):
        return f"process {pid} that started run {run_id} is gone (its pid is reused)"
    return None


def ancestors(pid: int) -> list[int]:
    """The processes `pid` descends from, its parent first (Linux's /proc)."""
    found: list[int] = []
    while pid > 1 and len(found) < 256:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        found.append(pid)
    return found


def _playbook(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def refuse(decision: Decision, invocation: Invocation) -> str:
    """Record the refusal (when the ledger can be written) and return the one line that
    says it. The caller stops the process."""
    recorded = "the refusal could not be recorded"
    if decision.ledger is not None:
        environment = decision.environment
        body = {
            "environment": environment.name if environment else None,
            "playbook": _playbook(invocation.playbook),
            "inventory": invocation.inventory,
            "limit": invocation.limit,
            "tags": invocation.tags,
            "check": invocation.check,
            "who": real_user(),
            "controller": socket.gethostname(),
            "decided_at": datetime.now(UTC).isoformat(),
            "run_id": decision.run_id,
            "action": "refuse",
            "decision": decision.said,
            "blocked": {},
            "unwrapped": True,
            "unwrapped_detail": STARTED_WITH,
        }
        try:
            decision.ledger.append(CHANGE_DECISION, decision.run_id, body)
        except UserError as exc:
            recorded = f"the refusal could not be recorded: {exc}"
        else:
            recorded = f"the refusal is recorded in the ledger ({decision.run_id})"
    return f"techops: refused: {decision.said}; {recorded}"


class UnwrappedRun:
    """An unwrapped run recorded as it happens: a RunRequest built from its command line,
    fed to the same Recorder, with the same Redactor, as `techops run` uses."""

    def __init__(
        self,
        decision: Decision,
        invocation: Invocation,
        *,
        extravars: dict[str, Any],
        hosts: list[str] | None,
        known: set[str],
    ) -> None:
        assert decision.ledger is not None, "an unwrapped run is recorded in a ledger"
        self.ledger = decision.ledger
        self.environment = decision.environment
        self.request = RunRequest(
            playbook=invocation.playbook,
            inventory=invocation.inventory,
            limit=invocation.limit,
            tags=invocation.tags,
            skip_tags=invocation.skip_tags,
            check=invocation.check,
            diff=invocation.diff,
            extravars=extravars,
            forks=invocation.forks,
            verbosity=invocation.verbosity,
            run_id=decision.run_id,
        )
        # What a techops run knows to be secret before it starts: the extra vars, the
        # inventory's secret values and vault passwords (found by the caller, in
        # Ansible's own process), this process's secret-named variables.
        redactor = Redactor.for_run(extravars, known | secret_values(dict(os.environ)))
        detail = STARTED_WITH + (f"; {decision.said}" if decision.said else "")
        self.recorder = Recorder(self.ledger, redactor=redactor, hosts=hosts, unwrapped=detail)
        self.started = datetime.now(UTC)
        self.saw_stats = False

    @property
    def run_id(self) -> str:
        return self.request.run_id

    def start(self) -> None:
        """Write run.started; a check-mode run on a protected environment, which `techops
        run` admits with a change.decision entry, gets one too."""
        if self.environment is not None:
            self.ledger.append(
                CHANGE_DECISION,
                self.run_id,
                {
                    "environment": self.environment.name,
                    "playbook": _playbook(self.request.playbook),
                    "inventory": self.request.inventory,
                    "limit": self.request.limit,
                    "tags": self.request.tags,
                    "check": self.request.check,
                    "who": real_user(),
                    "controller": socket.gethostname(),
                    "decided_at": self.started.isoformat(),
                    "run_id": self.run_id,
                    "action": "fire",
                    "decision": "check mode changes nothing: windows and freezes do not apply",
                    "blocked": {},
                    "unwrapped": True,
                    "unwrapped_detail": STARTED_WITH,
                },
            )
        self.recorder.on_start(self.request)

    def on_event(self, event: dict[str, Any]) -> None:
        self.saw_stats = self.saw_stats or event.get("event") == "playbook_on_stats"
        self.recorder.on_event(event)

    def finish(self) -> None:
        """Write run.finished from the last playbook_on_stats seen: its outcome as
        ansible-playbook's exit code would say it. A run that ended without one (an error
        that stopped ansible-playbook, Ctrl-C) is recorded as an error."""
        stats = self.recorder.stats
        if not self.saw_stats:
            status, rc = "error", RC_ERROR
        else:
            rc = rc_from_counters(stats)
            status = "successful" if rc == RC_OK else "failed"
        result = RunResult(
            run_id=self.run_id,
            status=status,
            rc=rc,
            stats=stats,
            artifacts=None,
            started=self.started,
            finished=datetime.now(UTC),
        )
        self.recorder.on_finish(result)


def rc_from_counters(stats: Mapping[str, Mapping[str, int]]) -> int:
    """ansible-playbook's exit code from per-host counters: 4 when a host was unreachable,
    2 when a task failed (a rescued failure is not counted by Ansible), else 0."""
    if any(counters.get("dark") for counters in stats.values()):
        return RC_HOST_UNREACHABLE
    if any(counters.get("failures") for counters in stats.values()):
        return RC_HOST_FAILED
    return RC_OK
