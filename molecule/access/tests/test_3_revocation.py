"""Revocation: bob deleted from the data, one converge (the scenario's side_effect step,
side_effect.yml), and bob's peer, secret, account and login are gone while alice's tunnel
and login keep working. The run's evidence says so. (`state: absent` revokes the same way;
the lab's integration test uses that form.)"""

from __future__ import annotations

import json

import pyotp
import pytest
from conftest import (
    ENROLMENT,
    GATEWAY_TUNNEL_ADDRESS,
    REVOCATION,
    TUNNEL_ADDRESSES,
    controller_address,
    enrolled_secret,
    fresh_code,
    handshakes,
    ssh_login,
    wait_for_ping,
)


def test_bob_logs_in_through_his_tunnel_before_he_is_revoked(tunnels):
    before = ssh_login(tunnels["bob"], "bob", fresh_code("bob"))
    assert before.rc == 0, before.stderr


@pytest.mark.after_revocation
def test_revoked_user_loses_peer_secret_account_and_login(gw, tunnels):
    bob = tunnels["bob"]
    alice = tunnels["alice"]
    bob_key = bob.check_output("wg pubkey < /etc/wireguard/user.key")
    alice_key = alice.check_output("wg pubkey < /etc/wireguard/user.key")
    # What side_effect.yml kept before it revoked bob: both secrets, the handshakes, and
    # the revoking run's record (ansible.builtin.json, with the custom stats).
    secrets = [enrolled_secret("alice"), enrolled_secret("bob")]
    before = dict(
        line.split() for line in (REVOCATION / "handshakes-before.txt").read_text().splitlines()
    )
    alice_handshake = int(before[alice_key])
    output = (REVOCATION / "run.json").read_text()
    run = {"output": output, "stats": json.loads(output)["custom_stats"]}

    # The peer is gone from the running interface; alice's stays, with its session.
    assert bob_key not in gw.check_output("wg show wg0 peers")
    assert handshakes(gw)[alice_key] >= alice_handshake
    wait_for_ping(alice, GATEWAY_TUNNEL_ADDRESS)
    # The secret and the account are gone.
    assert not gw.file("/var/lib/techops-mfa/bob").exists
    assert not gw.user("bob").exists
    assert not (ENROLMENT / "bob.txt").exists()
    # bob's tunnel no longer reaches the bastion, so neither does his login.
    assert bob.run(f"ping -c2 -W1 {GATEWAY_TUNNEL_ADDRESS}").rc != 0
    after = ssh_login(bob, "bob", pyotp.TOTP(secrets[1]).now())
    assert after.rc == 255
    # alice still logs in.
    still = ssh_login(alice, "alice", fresh_code("alice"))
    assert still.rc == 0, still.stderr

    # The evidence of that run, as the runner reads it from set_stats.
    evidence = run["stats"]["access-gw"]["techops_evidence"]["access"]
    users = {user["name"]: user for user in evidence["users"]}
    assert set(users) == {"alice"}  # bob is no longer in the data...
    assert users["alice"]["vpn_peer"] == "present"
    assert users["alice"]["vpn_address"] == TUNNEL_ADDRESSES["alice"]
    assert users["alice"]["last_handshake"] > 0
    assert users["alice"]["totp_enrolled"] is True
    assert users["alice"]["state"] == "present"
    assert evidence["revoked"] == ["bob"]  # ...and is named as revoked by this run
    controller = controller_address()
    assert evidence["automation_exemption"] == {
        "user": "ansible",
        "addresses": [controller],
        "authentication_methods": "publickey",
    }
    # No secret anywhere in the run's output.
    for secret in secrets:
        assert secret not in run["output"]
    assert secrets[0] not in json.dumps(run["stats"])
