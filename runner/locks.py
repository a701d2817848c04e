"""Run locks: two runs of the same playbook never touch the same host at once.

One lock file per (playbook, host) under .techops/locks, held with flock for the whole
run. The kernel releases a lock when its holder dies, so a killed run never leaves a
stale lock. Each file names its holder, so a refusal can say which run holds it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from runner.errors import UserError

RC_LOCKED = 1


class RunLock:
    def __init__(self, root: Path, playbook: str, hosts: Iterable[str], holder: dict) -> None:
        key = hashlib.sha256(playbook.encode()).hexdigest()[:16]
        self.dir = root / key
        self.hosts = sorted(set(hosts))
        self.holder = holder
        self.playbook = playbook
        self._files: list[int] = []

    def acquire(self) -> RunLock:
        self.dir.mkdir(parents=True, exist_ok=True)
        for host in self.hosts:
            name = hashlib.sha256(host.encode()).hexdigest()[:24] + ".lock"
            fd = os.open(self.dir / name, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                self.release()
                who = holder.get("run_id", "another run")
                by = f" by {holder['who']}" if holder.get("who") else ""
                raise UserError(
                    f"run {who}{by} is already running {self.playbook} on {host}: wait for it "
                    "to finish (techops runs --status running) or cancel it",
                    exit_code=RC_LOCKED,
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({**self.holder, "host": host}).encode(), 0)
            self._files.append(fd)
        return self

    def release(self) -> None:
        while self._files:
            fd = self._files.pop()
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def resolve_hosts(inventory: str, limit: str | None) -> list[str]:
    """The inventory hosts a run may touch (its --limit applied), as Ansible resolves them."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.display import Display

    Display().verbosity = 0
    manager = InventoryManager(loader=DataLoader(), sources=[inventory])
    if limit:
        manager.subset(limit)
    return [h.name for h in manager.get_hosts("all")]
