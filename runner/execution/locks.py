"""Run locks: two runs of the same playbook never touch the same host at once.

One lock file per (playbook, host) under .techops/locks, held for the whole run (see
runner.core.locks: a killed run never leaves a stale lock). Each file names its holder, so
a refusal can say which run holds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner.core.errors import UserError
from runner.core.locks import FileLock

RC_LOCKED = 1


class RunLock:
    def __init__(
        self, root: Path, playbook: str, hosts: Iterable[str], holder: dict[str, Any]
    ) -> None:
        key = hashlib.sha256(playbook.encode()).hexdigest()[:16]
        self.dir = root / key
        self.hosts = sorted(set(hosts))
        self.holder = holder
        self.playbook = playbook
        self._held: list[FileLock] = []

    def acquire(self) -> RunLock:
        for host in self.hosts:
            name = hashlib.sha256(host.encode()).hexdigest()[:24] + ".lock"
            lock = FileLock(self.dir / name)
            holder = lock.acquire({**self.holder, "host": host})
            if holder is not None:
                self.release()
                who = holder.get("run_id", "another run")
                by = f" by {holder['who']}" if holder.get("who") else ""
                raise UserError(
                    f"run {who}{by} is already running {self.playbook} on {host}: wait for it "
                    "to finish (techops runs --status running) or cancel it",
                    exit_code=RC_LOCKED,
                )
            self._held.append(lock)
        return self

    def release(self) -> None:
        while self._held:
            self._held.pop().release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
