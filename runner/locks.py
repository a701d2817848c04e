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
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

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


_PLAIN = re.compile(r"^[A-Za-z0-9_.-]+$")


def _yaml_groups(path: Path) -> dict[str, set[str]] | None:
    """Group name -> hosts of a plain YAML inventory file, or None when it is anything
    else (a directory, a script, a plugin configuration, INI)."""
    if not path.is_file() or path.suffix not in (".yml", ".yaml"):
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or "plugin" in data:
        return None
    groups: dict[str, set[str]] = {}

    def walk(name: str, node: object) -> set[str]:
        members: set[str] = set()
        if isinstance(node, dict):
            members |= set((node.get("hosts") or {}).keys())
            for child, sub in (node.get("children") or {}).items():
                members |= walk(child, sub)
        groups.setdefault(name, set()).update(members)
        return members

    for name, node in data.items():
        walk(name, node)
    groups.setdefault("all", set()).update(*groups.values())
    return groups


def resolve_hosts(inventory: str, limit: str | None) -> list[str]:
    """The inventory hosts a run may touch (its --limit applied), as Ansible resolves them.

    A plain YAML inventory with a limit of plain host and group names is read directly
    (this runs before every run, and loading Ansible's inventory machinery costs a
    noticeable fraction of a short run); anything else goes through Ansible itself.
    """
    groups = _yaml_groups(Path(inventory))
    if groups is not None:
        tokens = [t for t in re.split(r"[,:]", limit or "all") if t]
        if all(_PLAIN.match(t) for t in tokens):
            chosen: set[str] = set()
            for token in tokens:
                if token in groups:
                    chosen |= groups[token]
                elif token in groups["all"]:
                    chosen.add(token)
                else:
                    chosen = set()  # unknown name: let Ansible decide what it means
                    break
            else:
                return sorted(chosen)
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.display import Display

    Display().verbosity = 0
    manager = InventoryManager(loader=DataLoader(), sources=[inventory])
    if limit:
        manager.subset(limit)
    return [h.name for h in manager.get_hosts("all")]
