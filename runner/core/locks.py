"""One file lock for everything that must not happen twice at once on a controller.

An exclusive `flock` on a file under .techops/locks (or wherever the caller says). The
kernel releases it when its holder dies, so a killed run never leaves a stale lock. The
holder writes who it is into the file, so a refusal can name the run or process that
holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any


class FileLock:
    """An exclusive lock on one file. `acquire` tries (or waits, with `wait=True`);
    `release` lets go. As a context manager it waits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, holder: dict[str, Any] | None = None, *, wait: bool = False) -> dict | None:
        """None when the lock is taken (and `holder` written into the file); otherwise,
        without `wait`, what the process holding it wrote there ({} when unreadable)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found = read_holder(fd)
            os.close(fd)
            return found
        except BaseException:
            os.close(fd)
            raise
        if holder is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd
        return None

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> FileLock:
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(fd: int) -> dict[str, Any]:
    """What a lock's holder wrote into its file, or {} when it wrote nothing readable."""
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
