"""Fixtures for the base scenario: the instance's address, the test keys, an SSH client.

The `host` fixture (testinfra, podman backend) runs commands inside an instance. The
fixtures here act from outside it, as a person would: from this machine, over the
scenario's podman network, with the real OpenSSH client.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import container_address

# Made by prepare.yml: admin (the admin users' key), stale (a key the role must remove),
# lab (the automation account's key).
KEY_DIR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "keys"

# Options for every ssh call: no user configuration, no agent, no prompts, no known_hosts
# (the instances are throwaway and their host keys new on every run).
SSH_BASE_OPTIONS = [
    "-F",
    "/dev/null",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "LogLevel=ERROR",
]

SshRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def address(host) -> str:
    """The instance's address, as seen from this machine."""
    return container_address(host.backend.name)


@pytest.fixture(scope="module")
def ssh(address: str) -> SshRunner:
    """Run the OpenSSH client against the instance and return the finished process.

    ssh(user, *command, key="admin", options=[...], env={...}): key=None offers no key.
    BatchMode (no prompts) unless the options say otherwise.
    """

    def run(
        user: str,
        *command: str,
        key: str | None = "admin",
        options: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        # ssh keeps the first value given for an option: the test's own options go first.
        args = ["ssh", *(options or ["-o", "BatchMode=yes"]), *SSH_BASE_OPTIONS]
        if key is not None:
            args += ["-i", str(KEY_DIR / key), "-o", "IdentitiesOnly=yes"]
        args += [f"{user}@{address}", *command]
        run_env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        run_env.update(env or {})
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=30,
            env=run_env,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def public_keys() -> dict[str, str]:
    """The public halves of the test keys (type and key, without comment), by name."""
    keys = {}
    for name in ("admin", "stale", "lab"):
        kind, blob, *_ = (KEY_DIR / f"{name}.pub").read_text().split()
        keys[name] = f"{kind} {blob}"
    return keys
