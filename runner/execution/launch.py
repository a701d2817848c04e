"""A recorded run: the one path every run takes, by hand or scheduled.

`run_recorded` takes the host locks (files on this controller, or leases in a PostgreSQL
ledger that several controllers share: runner.execution.locks), runs with live progress
and the ledger's recorder (the caller opened the ledger first: a run that cannot be
recorded does not start), and applies retention to what runs leave on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from runner.core.identity import real_user
from runner.core.inventory import resolve_hosts
from runner.core.paths import state_dir
from runner.execution.locks import HostBusy, host_lock
from runner.execution.progress import Progress
from runner.execution.request import RunRequest, RunResult, fact_cache_dir
from runner.execution.run import execute
from runner.execution.vault import inventory_secrets
from runner.ledger.recorder import Recorder, reap_interrupted
from runner.ledger.redact import Redactor, secret_values
from runner.ledger.retention import Policy, prune_artifacts
from runner.ledger.store import Ledger


@dataclass(frozen=True)
class Why:
    """Why a run happens, as the ledger records it: the reason and the ticket given, and
    the scheduled job that fired it, if one did."""

    reason: str | None = None
    ticket: str | None = None
    schedule: str | None = None


UNSAID = Why()
# A run refused before it started (its hosts held by another run).
REFUSED = "run.refused"


def run_recorded(request: RunRequest, ledger: Ledger, why: Why = UNSAID) -> RunResult:
    reap_interrupted(ledger)
    hosts = resolve_hosts(request.inventory, request.limit)
    # Read before anything runs: a vault password that opens nothing, or an inventory
    # Ansible cannot parse, stops here, and a run whose secrets are unknown never starts.
    opened = inventory_secrets(request.inventory, request.vault, request.ansible_env())
    if request.node is not None:
        request.vault = request.vault.for_node(opened.passwords)
    # The passwords themselves, and this process's own secret-named variables (a token
    # exported for a lookup, an SSHPASS): a task that prints its environment, or the
    # controller's facts, would show them.
    known = opened.values | {pw for _, pw in opened.passwords} | secret_values(dict(os.environ))
    redactor = Redactor.for_run(request.extravars, known | request.vault.known_passwords())
    recorder = Recorder(
        ledger,
        redactor=redactor,
        reason=why.reason,
        ticket=why.ticket,
        schedule=why.schedule,
        hosts=hosts,
    )
    holder = {
        "run_id": request.run_id,
        "who": why.schedule or real_user()["name"],
        "pid": os.getpid(),
    }
    lock = host_lock(ledger, str(request.playbook), hosts, holder)
    try:
        lock.acquire()
    except HostBusy as busy:
        # Refused before it started: the refusal is on the record, naming the holder.
        ledger.append(
            REFUSED,
            request.run_id,
            {
                "run_id": request.run_id,
                "playbook": request.playbook.name,
                "inventory": request.inventory,
                "hosts": hosts,
                "who": real_user(),
                "reason": redactor.text(why.reason) if why.reason else why.reason,
                "ticket": redactor.text(why.ticket) if why.ticket else why.ticket,
                "schedule": why.schedule,
                "refused": str(busy),
                "held_by": {"host": busy.host, **busy.holder},
            },
        )
        raise
    try:
        result = execute(request, [Progress(redactor=redactor), recorder])
    except BaseException:
        recorder.finish("error", 250)
        # A run that ended in an error still leaves no secret in its artifacts.
        redactor.tree(state_dir() / "runs" / request.run_id)
        raise
    finally:
        # The fact cache holds what hosts reported (their environment, for one): it keeps
        # no secret this run knew, whatever happened.
        redactor.tree(fact_cache_dir(request.inventory))
        lock.release()
    prune_artifacts(state_dir() / "runs", Policy.from_env(), keep={request.run_id})
    return result
