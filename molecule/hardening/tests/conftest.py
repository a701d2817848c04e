"""Fixtures for the hardening scenario: an SSH client from this machine, and PAM driven
inside the instance.

The `host` fixture (testinfra, podman backend) runs commands inside an instance, as root.
`ssh` acts from outside, as Ansible does: the automation account logs in with its key.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import container_address, ssh_client

# Made by prepare.yml: the automation account's key.
KEY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "keys" / "lab"


SshRunner = Callable[..., subprocess.CompletedProcess[str]]
Authenticator = Callable[[str, str], bool]


@pytest.fixture(scope="module")
def ssh(host) -> SshRunner:
    """Run a command over SSH as the automation account, with its key, without prompts."""
    address = container_address(host.backend.name)

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return ssh_client(f"ansible@{address}", *command, key=KEY)

    return run


@pytest.fixture(scope="session")
def passwords() -> dict[str, str]:
    """The passwords prepare.yml gave (test-only, throwaway instances)."""
    return {"opsadmin": "Molecule-only-1", "root": "Molecule-root-1"}


@pytest.fixture
def authenticate(host) -> Authenticator:
    """authenticate(user, password): whether PAM's auth stack (sudo's, which includes
    common-auth and has no pam_rootok) accepts that password, as pamtester asks it."""

    def run(user: str, password: str) -> bool:
        answer = f"printf '%s\\n' {shlex.quote(password)}"
        result = host.run(f"{answer} | pamtester sudo {shlex.quote(user)} authenticate")
        return result.rc == 0

    return run
