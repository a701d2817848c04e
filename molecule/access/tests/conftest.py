"""Fixtures for the access scenario: the hosts by role, their tunnels, TOTP codes, SSH logins.

The tests act as people would, from outside the bastion: a user's machine brings its
tunnel up with the client configuration the vpn role wrote on the controller, and logs in
with the real OpenSSH client, answering the code prompt through SSH_ASKPASS with a code
computed from the enrolment material the mfa role wrote on the controller.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
import testinfra

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
KEYS = EPHEMERAL / "keys"
ENROLMENT = EPHEMERAL / "enrolment" / "access-gw"
CLIENTS = EPHEMERAL / "wireguard-clients"

GATEWAY_TUNNEL_ADDRESS = "10.200.0.1"
TUNNEL_ADDRESSES = {"alice": "10.200.0.2", "bob": "10.200.0.3"}

SSH_OPTIONS = (
    "-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    " -o ConnectTimeout=5 -o LogLevel=ERROR -o IdentitiesOnly=yes -o NumberOfPasswordPrompts=1"
)


@pytest.fixture(scope="session")
def gw():
    return testinfra.get_host("podman://access-gw")


@pytest.fixture(scope="session")
def internal():
    return testinfra.get_host("podman://access-internal")


@pytest.fixture(scope="session")
def machines():
    """The users' machines, by user name."""
    return {name: testinfra.get_host(f"podman://access-{name}") for name in ("alice", "bob")}


def enrolled_secret(user: str) -> str:
    """The TOTP secret from the user's enrolment file (what the user's app would scan)."""
    path = ENROLMENT / f"{user}.txt"
    if not path.exists() and (REVOCATION / f"{user}.txt").exists():
        path = REVOCATION / f"{user}.txt"  # kept by side_effect.yml before it revoked bob
    text = path.read_text()
    match = re.search(r"^otpauth URI: (otpauth://totp/\S+)$", text, re.MULTILINE)
    assert match, f"no otpauth URI in the enrolment file of {user}"
    return pyotp.parse_uri(match.group(1)).secret


def bring_tunnel_up(machine, user: str) -> None:
    """Install the user's client configuration with their own private key, then wg-quick up."""
    if machine.run("wg show wg0").rc == 0:
        return
    subprocess.run(
        [
            "podman",
            "cp",
            str(CLIENTS / f"{user}.conf"),
            f"access-{user}:/etc/wireguard/client.conf",
        ],
        check=True,
    )
    machine.run_expect(
        [0],
        "set -e; umask 077; key=$(cat /etc/wireguard/user.key);"
        ' sed "s|^# PrivateKey = .*|PrivateKey = $key|" /etc/wireguard/client.conf'
        " > /etc/wireguard/wg0.conf; wg-quick up wg0",
    )


def wait_for_ping(machine, address: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if machine.run(f"ping -c1 -W1 {address}").rc == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{address} does not answer through the tunnel")


@pytest.fixture(scope="session")
def tunnels(machines):
    """Both users' tunnels up; returns the machines."""
    for user, machine in machines.items():
        bring_tunnel_up(machine, user)
    return machines


@dataclass
class Login:
    rc: int
    stdout: str
    stderr: str


def ssh_login(
    machine,
    user: str,
    code: str | None,
    *,
    key: str = "/root/.ssh/id_ed25519",
    target: str = GATEWAY_TUNNEL_ADDRESS,
    verbose: bool = False,
) -> Login:
    """Log in from a user's machine with the real OpenSSH client and run `id -un`.

    code=None offers no answer to the code prompt (BatchMode): key alone.
    """
    opts = SSH_OPTIONS + f" -i {shlex.quote(key)}" + (" -v" if verbose else "")
    if code is None:
        command = f"ssh {opts} -o BatchMode=yes {user}@{target} id -un"
    else:
        machine.run_expect(
            [0],
            f"printf '#!/bin/sh\\necho %s\\n' {shlex.quote(code)} > /root/askpass"
            " && chmod 700 /root/askpass",
        )
        command = (
            "SSH_ASKPASS=/root/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=:0"
            f" setsid ssh {opts} {user}@{target} id -un"
        )
    # OpenSSH 9.8 and later (Debian 13) refuse connections for a while from a source with
    # several failed logins (PerSourcePenalties): wait that out rather than count it as a
    # refusal of the login under test.
    deadline = time.monotonic() + 45
    while True:
        result = machine.run(f"{command} </dev/null")
        penalised = "kex_exchange_identification" in result.stderr
        if not penalised or time.monotonic() > deadline:
            return Login(result.rc, result.stdout.strip(), result.stderr)
        time.sleep(3)


def current_code(user: str) -> str:
    return pyotp.TOTP(enrolled_secret(user)).now()


def controller_address() -> str:
    """This machine's address on the scenario's network (its gateway)."""
    out = subprocess.run(
        ["podman", "network", "inspect", "access-net"], check=True, capture_output=True, text=True
    ).stdout
    return str(json.loads(out)[0]["subnets"][0]["gateway"])


# The scenario changes state once: its side_effect step revokes bob (side_effect.yml) and
# keeps what the tests after it need here. verify runs before and after that step; each
# test says which state it checks (marker `after_revocation`, or none: before it).
REVOCATION = EPHEMERAL / "revocation"


def revoked() -> bool:
    return (REVOCATION / "run.json").is_file()


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "after_revocation: runs in the verify after side_effect.yml revoked bob"
    )


def pytest_collection_modifyitems(config, items) -> None:
    after = revoked()
    for item in items:
        if item.get_closest_marker("after_revocation") and not after:
            item.add_marker(
                pytest.mark.skip(reason="checks the revocation: runs after the side_effect step")
            )
        elif not item.get_closest_marker("after_revocation") and after:
            item.add_marker(
                pytest.mark.skip(reason="checks the granted state: ran before the side_effect step")
            )


def handshakes(gw) -> dict[str, int]:
    out = gw.check_output("wg show wg0 latest-handshakes")
    return {key: int(epoch) for key, epoch in (line.split() for line in out.splitlines())}


def fresh_code(user: str) -> str:
    """A code no earlier test used: wait for the next time step when needed."""
    totp = pyotp.TOTP(enrolled_secret(user))
    code = totp.now()
    used = getattr(fresh_code, "used", set())
    while code in used:
        time.sleep(1)
        code = totp.now()
    used.add(code)
    fresh_code.used = used
    return code
