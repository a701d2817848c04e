"""Where things live in the repository checkout."""

from __future__ import annotations

import os
from pathlib import Path

# The repository's callback plugins, relative to its root (ansible.cfg's callback_plugins).
# ansible-runner replaces that setting with its own directory, so runs name it again.
CALLBACK_PLUGINS = "plugins/callback"


def repo_root() -> Path:
    """The repository root: TECHOPS_ROOT if set, else the checkout this package sits in."""
    env = os.environ.get("TECHOPS_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Controller-side state that must never be committed (lab key, known_hosts, artifacts)."""
    path = repo_root() / ".techops"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def inventory_files(inventory: str) -> tuple[Path, list[Path]]:
    """An inventory's own files and the directory they are relative to: a file with the
    group_vars/ and host_vars/ beside it, or every file of a directory; none for a host
    list. One definition for what is hashed, scanned for secrets and sent to a node."""
    path = Path(inventory)
    if path.is_dir():
        return path, sorted(p for p in path.rglob("*") if p.is_file())
    if not path.is_file():
        return path.parent, []
    files = [path]
    for sub in ("group_vars", "host_vars"):
        if (path.parent / sub).is_dir():
            files += sorted(p for p in (path.parent / sub).rglob("*") if p.is_file())
    return path.parent, files
