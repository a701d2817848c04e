"""Where things live in the repository checkout."""

from __future__ import annotations

import os
from pathlib import Path

# The repository's callback plugins, relative to its root (ansible.cfg's callback_plugins).
# ansible-runner replaces that setting with its own directory, so runs name it again.
CALLBACK_PLUGINS = "plugins/callback"
# What techops keeps for itself (the ledger, signing keys, run artifacts, facts) is its
# owner's only: directories it creates are 0700, files of its own 0600.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def repo_root() -> Path:
    """The repository root: TECHOPS_ROOT if set, else the checkout this package sits in."""
    env = os.environ.get("TECHOPS_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def repo_relative(path: Path, root: Path | None = None) -> str:
    """A path as records show it: relative to the repository when it lies inside, as
    given otherwise."""
    try:
        return str(path.resolve().relative_to(root or repo_root()))
    except ValueError:
        return str(path)


def state_dir() -> Path:
    """Controller-side state that must never be committed (lab key, known_hosts, artifacts,
    facts, the ledger): created readable by its owner only, since run artifacts and facts
    hold what hosts returned."""
    path = repo_root() / ".techops"
    path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    return path


def private_dirs(path: Path) -> None:
    """Create the directory `path` and its missing parents, each readable by its owner only.

    Directories that already exist keep their mode: techops does not change what it did
    not create (/tmp, a home directory, a folder an operator shares on purpose). Raises
    OSError when a directory cannot be created."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # another process made it meanwhile: not ours
            if not directory.is_dir():
                raise
