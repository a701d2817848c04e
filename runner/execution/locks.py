"""Run locks: two runs never touch the same host at once, whatever their playbooks.

`site.yml` reconfiguring sshd while `patch.yml` reboots the same host is the overlap that
hurts, so the lock is the host's, not the playbook's: one lock file per host under
.techops/locks/hosts, held for the whole run (see runner.core.locks: a killed run never
leaves a stale lock). Each file names its holder (run, playbook, user), so a refusal can
say which run holds the host.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner.core.errors import UserError
from runner.core.locks import FileLock

RC_LOCKED = 1


class HostBusy(UserError):
    """A host is held by another run: the refusal names that run."""

    def __init__(self, host: str, holder: dict[str, Any]) -> None:
        run = holder.get("run_id", "another run")
        by = f" by {holder['who']}" if holder.get("who") else ""
        playbook = holder.get("playbook") or "a playbook"
        super().__init__(
            f"run {run}{by} is already running {playbook} on {host}: wait for it to finish "
            "(techops runs --status running) or cancel it",
            exit_code=RC_LOCKED,
        )
        self.host = host
        self.holder = holder


class RunLock:
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
