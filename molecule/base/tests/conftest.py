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

from tests.helpers import container_address, ssh_client

# Made by prepare.yml: admin (the admin users' key), stale (a key the role must remove),
# lab (the automation account's key).
KEY_DIR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "keys"

# Options for every ssh call: no user configuration, no agent, no prompts, no known_hosts
# (the instances are throwaway and their host keys new on every run).
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
        return ssh_client(
            f"{user}@{address}",
            *command,
            key=None if key is None else KEY_DIR / key,
            options=options,
            env=env,
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
