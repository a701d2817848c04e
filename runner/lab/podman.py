"""Podman, as the lab calls it: one place that runs its commands and explains failures."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence

from runner.core.errors import UserError

# Where the lab says what it does: print, or a test's list.
Say = Callable[[str], object]


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input_text: str | None = None,
    capture: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv),
            input=input_text,
            text=True,
            capture_output=capture,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise UserError(f"{argv[0]} is not installed: run scripts/setup as root first") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"'{' '.join(argv[:3])} …' did not finish in {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()
        last = detail[-1] if detail else f"exit {proc.returncode}"
        if "netavark" in last and "No such file or directory" in last:
            last += " (netavark needs iptables: run scripts/setup, which installs it)"
        raise UserError(f"{' '.join(argv[:4])} … failed: {last}")
    return proc


def require_podman() -> None:
    if shutil.which("podman") is None:
        raise UserError(
            "podman is not installed: run scripts/setup as root (it installs podman and runc)"
        )
