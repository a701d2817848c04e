"""Run locks: two runs never touch the same host at once, whatever their playbooks.

`site.yml` reconfiguring sshd while `patch.yml` reboots the same host is the overlap that
hurts, so the lock is the host's, not the playbook's, held for the whole run, and it names
its holder (run, playbook, user), so a refusal can say which run holds the host.

Where the lock lives follows the ledger, because the ledger says which controllers work
together. A SQLite ledger is one controller's: one lock file per host under
.techops/locks/hosts (see runner.core.locks: a killed run never leaves a stale lock). A
PostgreSQL ledger may be shared by several controllers, whose files cannot see each
other: there the locks are leases in the database (runner.ledger.leases), renewed by a
heartbeat while the run lasts, so a controller that dies gives its hosts up when its
leases lapse.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner.core.errors import UserError
from runner.core.locks import FileLock
from runner.core.paths import state_dir
from runner.ledger import leases
from runner.ledger.store import Ledger

RC_LOCKED = 1
# How long a lease outlives its holder's last renewal: long enough that a database
# hiccup or a stalled controller does not lose its hosts (the heartbeat renews three times
# per duration, so two renewals can fail before a lease lapses), short enough that the
# hosts of a controller that died are free again within minutes.
LEASE_ENV = "TECHOPS_LEASE_SECONDS"
DEFAULT_LEASE_S = 120
MIN_LEASE_S = 2
MAX_LEASE_S = 86400
BEATS_PER_LEASE = 3


class HostBusy(UserError):
    """A host is held by another run: the refusal names that run."""

    def __init__(self, host: str, holder: dict[str, Any]) -> None:
        run = holder.get("run_id", "another run")
        by = f" by {holder['who']}" if holder.get("who") else ""
        playbook = holder.get("playbook") or "a playbook"
        where = f" from controller {holder['controller']}" if holder.get("controller") else ""
        lapse = (
            f"; if its controller died, its lease lapses within {holder['lease_seconds_left']} s"
            if holder.get("lease_seconds_left")
            else ""
        )
        super().__init__(
            f"run {run}{by} is already running {playbook} on {host}{where}: wait for it to "
            f"finish (techops runs --status running) or cancel it{lapse}",
            exit_code=RC_LOCKED,
        )
        self.host = host
        self.holder = holder


class RunLock:
    """A run's hosts locked with files on this controller (a SQLite ledger's runs)."""

    def __init__(
        self, root: Path, playbook: str, hosts: Iterable[str], holder: dict[str, Any]
    ) -> None:
        self.dir = root / "hosts"
        self.hosts = sorted(set(hosts))
        self.holder = {**holder, "playbook": Path(playbook).name}
        self.playbook = playbook
        self._held: list[FileLock] = []

    def acquire(self) -> RunLock:
        for host in self.hosts:
            name = hashlib.sha256(host.encode()).hexdigest()[:24] + ".lock"
            lock = FileLock(self.dir / name)
            holder = lock.acquire({**self.holder, "host": host})
            if holder is not None:
                self.release()
                raise HostBusy(host, holder)
            self._held.append(lock)
        return self

    def release(self) -> None:
        while self._held:
            self._held.pop().release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lease_seconds() -> int:
    """The lease duration TECHOPS_LEASE_SECONDS asks for (default 120 s), checked: a lease
    the heartbeat cannot keep alive, or one that would hold a dead controller's hosts for
    days, is refused before the run starts."""
    raw = os.environ.get(LEASE_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_LEASE_S
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if not MIN_LEASE_S <= value <= MAX_LEASE_S:
        raise UserError(
            f"{LEASE_ENV}={raw!r}: give a whole number of seconds from {MIN_LEASE_S} to "
            f"{MAX_LEASE_S} (default {DEFAULT_LEASE_S})"
        )
    return value


class LeaseLock:
    """A run's hosts leased in a PostgreSQL ledger, shared by every controller recording
    into it.

    `acquire` takes every host or none (runner.ledger.leases.take) and starts a heartbeat,
    a daemon thread that renews the leases every third of their duration. The heartbeat
    never stops the run: when it cannot reach the database it warns once and keeps
    trying (the leases survive two missed renewals, and a lapsed lease that nobody took
    over is renewed when the database answers again); when another run took a lapsed
    host over, it warns that the host is no longer this run's alone. Stopping a playbook
    half-way would do more harm than either. `release` stops the heartbeat and deletes
    the leases; if the database cannot be reached then, they lapse on their own."""

    def __init__(
        self,
        ledger: Ledger,
        playbook: str,
        hosts: Iterable[str],
        holder: dict[str, Any],
        seconds: int | None = None,
    ) -> None:
        self.ledger = ledger
        self.hosts = sorted(set(hosts))
        self.holder = {
            **holder,
            "playbook": Path(playbook).name,
            "controller": socket.gethostname(),
            "pid": holder.get("pid", os.getpid()),
        }
        self.seconds = lease_seconds() if seconds is None else seconds
        self.interval = self.seconds / BEATS_PER_LEASE
        # This acquisition's own mark on its rows: a run renews and releases only these.
        self.token = secrets.token_hex(16)
        self.lost: set[str] = set()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def run(self) -> str:
        return str(self.holder.get("run_id", "this run"))

    def acquire(self) -> LeaseLock:
        taken = leases.take(self.ledger, self.token, self.hosts, self.holder, self.seconds)
        if taken.busy_host is not None:
            raise HostBusy(taken.busy_host, taken.busy_holder)
        for host, previous in sorted(taken.taken_over.items()):
            _warn(
                f"{host}: took over the lapsed lease of run {previous.get('run_id', '?')} "
                f"(controller {previous.get('controller', '?')} stopped renewing it)"
            )
        if self.hosts:
            self._stop.clear()
            self._beat = threading.Thread(
                target=self._heartbeat, name=f"lease-heartbeat-{self.run}", daemon=True
            )
            self._beat.start()
        return self

    def _heartbeat(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                held = leases.renew(self.ledger, self.token, self.seconds, timeout_s=self.interval)
            except Exception as exc:  # whatever the failure, the run goes on; say so once
                if not failing:
                    _warn(
                        f"run {self.run} cannot renew its host leases: {exc}; retrying every "
                        f"{self.interval:g} s (they lapse {self.seconds} s after the last "
                        "renewal, and another controller may then take the hosts)"
                    )
                    failing = True
                continue
            if failing:
                _warn(f"run {self.run} renews its host leases again")
                failing = False
            lost = set(self.hosts) - held - self.lost
            if lost:
                self.lost |= lost
                _warn(
                    f"run {self.run} lost its lease on {', '.join(sorted(lost))}: it lapsed "
                    "and another run took it over (or it was deleted); another run may now "
                    "work on the same host"
                )

    def release(self) -> None:
        beat, self._beat = self._beat, None
        if beat is None:
            return
        self._stop.set()
        # A renewal in flight and the release cannot undo each other (a renewal after the
        # delete finds no row of this token), so the wait is short.
        beat.join(timeout=1)
        try:
            leases.give_up(self.ledger, self.token, timeout_s=self.interval)
        except Exception as exc:  # the release must not hide how the run ended
            _warn(
                f"run {self.run} could not release its host leases: {exc}; "
                f"they lapse within {self.seconds} s"
            )

    def __enter__(self) -> LeaseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


HostLock = RunLock | LeaseLock


def host_lock(
    ledger: Ledger, playbook: str, hosts: Iterable[str], holder: dict[str, Any]
) -> HostLock:
    """The lock for a run's hosts, chosen by the ledger: leases in a PostgreSQL ledger,
    which several controllers may share; files on this controller for a SQLite ledger,
    which is this controller's own."""
    if ledger.dialect == "postgresql":
        return LeaseLock(ledger, playbook, hosts, holder)
    return RunLock(state_dir() / "locks", playbook, hosts, holder)


def _warn(message: str) -> None:
    print(f"techops: warning: {message}", file=sys.stderr)
