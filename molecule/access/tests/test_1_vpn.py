"""The tunnel: keys made on the hosts, traffic with a handshake, SSH only through it."""

from __future__ import annotations

import time

from conftest import (
    GATEWAY_TUNNEL_ADDRESS,
    TUNNEL_ADDRESSES,
    handshakes,
    wait_for_ping,
)

from tests.helpers import container_address


def test_private_keys_stay_on_the_hosts_readable_by_root_only(gw, internal):
    for host in (gw, internal):
        key = host.file("/etc/wireguard/wg0.key")
        assert key.user == "root"
        assert key.mode == 0o600
        assert host.file("/etc/wireguard").mode == 0o700
        # The configuration holds no private key: it is set from the key file.
        assert "PrivateKey" not in host.file("/etc/wireguard/wg0.conf").content_string


def test_user_tunnels_carry_traffic_with_a_handshake(gw, tunnels):
    for user, machine in tunnels.items():
        wait_for_ping(machine, GATEWAY_TUNNEL_ADDRESS)
        public_key = machine.check_output("wg pubkey < /etc/wireguard/user.key")
        assert handshakes(gw)[public_key] > 0, f"no handshake with {user}'s peer"
        # The address the pool gave the user, as the client configuration set it.
        assert f"inet {TUNNEL_ADDRESSES[user]}/32" in machine.check_output("ip -4 addr show wg0")


def test_managed_peer_learned_the_gateway_key_from_facts_and_is_connected(gw, internal):
    gateway_key = gw.check_output("wg show wg0 public-key")
    assert internal.check_output("wg show wg0 peers") == gateway_key
    wait_for_ping(internal, GATEWAY_TUNNEL_ADDRESS)
    assert handshakes(gw)[internal.check_output("wg show wg0 public-key")] > 0


def test_client_configurations_on_the_controller_are_private_and_keyless(tunnels):
    from conftest import CLIENTS

    assert CLIENTS.stat().st_mode & 0o777 == 0o700
    for user in tunnels:
        path = CLIENTS / f"{user}.conf"
        assert path.stat().st_mode & 0o777 == 0o600
        assert "\nPrivateKey" not in path.read_text()


def ssh_port_answers(machine, address: str) -> bool:
    """Whether a TCP connection to address:22 from the machine gets an SSH banner in 3 s."""
    probe = (
        "python3 -c 'import socket,sys; s=socket.create_connection((sys.argv[1], 22), timeout=3);"
        ' sys.exit(0 if s.recv(8).startswith(b"SSH-") else 1)\' '
    )
    return machine.run(probe + address).rc == 0


def test_bastion_ssh_answers_only_through_the_tunnel(gw, internal, tunnels):
    alice = tunnels["alice"]
    gw_address = container_address("access-gw")
    # Through the tunnel: open.
    assert ssh_port_answers(alice, GATEWAY_TUNNEL_ADDRESS)
    # From the same machine outside the tunnel, and from the internal host: dropped.
    assert not ssh_port_answers(alice, gw_address)
    assert not ssh_port_answers(internal, gw_address)
    # The network itself is fine: the internal host's SSH answers alice directly.
    assert ssh_port_answers(alice, container_address("access-internal"))
    assert "drop" in gw.check_output("nft list chain inet techops_vpn input")


def test_ssh_restriction_survives_an_nftables_restart(gw):
    # Debian's own /etc/nftables.conf starts with `flush ruleset`: the table comes back.
    gw.run_expect([0], "systemctl restart nftables")
    time.sleep(1)
    assert gw.run("nft list table inet techops_vpn").rc == 0
