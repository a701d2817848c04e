"""Where things live in the repository checkout."""

from __future__ import annotations

import os
from pathlib import Path


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
