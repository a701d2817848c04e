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
    return Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """Controller-side state that must never be committed (lab key, known_hosts, artifacts)."""
    path = repo_root() / ".techops"
    path.mkdir(mode=0o700, exist_ok=True)
    return path
