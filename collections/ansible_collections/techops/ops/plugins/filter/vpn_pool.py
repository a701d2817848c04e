# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Filters of the access roles (vpn, mfa): tunnel addresses from a pool, and evidence.

Tunnel addresses for WireGuard peers are taken from an address pool.

Allocation is deterministic and needs no state on the hosts: entries get the free host
addresses of the pool in the order they are listed, after the reserved addresses and the
addresses pinned by entries themselves. Appending entries never moves existing ones, and a
revoked entry (state: absent) keeps its address while it stays in the list, so the address
is not handed to somebody else while the old peer might still be configured somewhere.
Removing an entry from the list frees its address for later entries: pin an address
(`address:`) where it must never change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# Each filter's documentation (ansible-doc -t filter NAME) is in NAME.yml next to this file:
# Ansible would give a DOCUMENTATION string here to every filter of the file.


def _network(pool: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(pool), strict=True)
    except ValueError as exc:
        raise AnsibleFilterError(
            f"vpn_pool: pool {pool!r} is not a network in CIDR notation: {exc}"
        ) from exc


def _hosts(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Iterable[Any]:
    """Usable host addresses: /31, /32, /127 and /128 have none for peers."""
    if network.num_addresses <= 2:
        return iter(())
    return network.hosts()


def vpn_pool_address(pool: str, index: int) -> str:
    """The index-th usable host address of the pool (1 is the first, usually the gateway)."""
    network = _network(pool)
    try:
        index = int(index)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"vpn_pool_address: index {index!r} is not an integer") from exc
    usable = network.num_addresses - 2 if network.num_addresses > 2 else 0
    if not 1 <= index <= usable:
        raise AnsibleFilterError(
            f"vpn_pool_address: pool {network} has {usable} usable addresses; "
            f"index {index} is outside it"
        )
    return str(network.network_address + index)


def vpn_pool(entries: Any, pool: str, reserved: Iterable[str] | None = None) -> dict[str, str]:
    """Map each entry's name to a tunnel address from the pool (see the module docstring)."""
    network = _network(pool)
    if not isinstance(entries, list):
        raise AnsibleFilterError(
            f"vpn_pool: expected a list of entries, got {type(entries).__name__}"
        )

    names: list[str] = []
    pinned: dict[str, Any] = {}
    for entry in entries:
        if isinstance(entry, str):
            name, address = entry, None
        elif isinstance(entry, Mapping) and entry.get("name"):
            name, address = str(entry["name"]), entry.get("address")
        else:
            raise AnsibleFilterError(f"vpn_pool: each entry needs a name; got {entry!r}")
        if name in names:
            raise AnsibleFilterError(
                f"vpn_pool: the name {name!r} is listed twice; names must be unique"
            )
        names.append(name)
        if address:
            try:
                pinned[name] = ipaddress.ip_address(str(address).split("/", 1)[0])
            except ValueError as exc:
                raise AnsibleFilterError(
                    f"vpn_pool: address {address!r} of {name!r} is not an address"
                ) from exc

    taken: dict[Any, str] = {}
    for item in reserved or []:
        try:
            taken[ipaddress.ip_address(str(item).split("/", 1)[0])] = "(reserved)"
        except ValueError as exc:
            raise AnsibleFilterError(
                f"vpn_pool: reserved address {item!r} is not an address"
            ) from exc

    hosts = set(_hosts(network))
    for name, address in pinned.items():
        if address not in hosts:
            raise AnsibleFilterError(
                f"vpn_pool: the address {address} pinned for {name!r} "
                f"is not a usable host address of {network}"
            )
        if address in taken:
            raise AnsibleFilterError(
                f"vpn_pool: the address {address} pinned for {name!r} "
                f"is already used by {taken[address]}"
            )
        taken[address] = repr(name)

    result = {name: str(address) for name, address in pinned.items()}
    free = (address for address in _hosts(network) if address not in taken)
    for name in names:
        if name in result:
            continue
        address = next(free, None)
        if address is None:
            unassigned = [n for n in names if n not in result]
            raise AnsibleFilterError(
                f"vpn_pool: the pool {network} is exhausted: "
                f"no address left for {', '.join(unassigned)}; "
                "use a larger pool or remove revoked entries from the list"
            )
        result[name] = str(address)
    return {name: result[name] for name in names}


def vpn_address_in(address: str, networks: Iterable[str]) -> bool:
    """Whether an address lies in one of the networks (addresses or CIDRs)."""
    try:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return False
    for network in networks or []:
        try:
            if ip in ipaddress.ip_network(str(network), strict=False):
                return True
        except ValueError as exc:
            msg = f"vpn_address_in: {network!r} is not an address or network"
            raise AnsibleFilterError(msg) from exc
    return False


def vpn_peer_status(
    users: list[Mapping[str, Any]], addresses: Mapping[str, str], handshakes: str
) -> list[dict[str, Any]]:
    """Each user's peer as the running interface shows it, for the run's evidence.

    handshakes is the output of `wg show IFACE latest-handshakes` (public key, a tab, epoch
    seconds; 0 until the first handshake).
    """
    seen: dict[str, int] = {}
    for line in (handshakes or "").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            seen[fields[0]] = int(fields[1])
    status = []
    for user in users:
        key = user.get("public_key")
        present = key in seen
        status.append(
            {
                "name": user["name"],
                "state": user.get("state", "present"),
                "vpn_peer": "present" if present else "absent",
                "vpn_address": addresses.get(user["name"]),
                "last_handshake": (seen[key] or None) if key is not None and present else None,
            }
        )
    return status


def access_totp_status(users: list[Mapping[str, Any]], enrolled: Iterable[str]) -> list[dict]:
    """Each user's second factor as the host shows it: a secret file named after the user."""
    names = set(enrolled or [])
    return [
        {
            "name": user["name"],
            "state": user.get("state", "present"),
            "totp_enrolled": user["name"] in names,
        }
        for user in users
    ]


def access_users_evidence(
    vpn_status: list[Mapping[str, Any]] | None, mfa_status: list[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """One record per user from what the vpn and mfa roles found on this host.

    A user known to one role only gets the other role's fields as absent: no peer, no
    address, no handshake, not enrolled.
    """
    vpn = {entry["name"]: entry for entry in vpn_status or []}
    mfa = {entry["name"]: entry for entry in mfa_status or []}
    names = list(vpn) + [name for name in mfa if name not in vpn]
    records = []
    for name in names:
        v, m = vpn.get(name, {}), mfa.get(name, {})
        records.append(
            {
                "name": name,
                "vpn_peer": v.get("vpn_peer", "absent"),
                "vpn_address": v.get("vpn_address"),
                "last_handshake": v.get("last_handshake"),
                "totp_enrolled": bool(m.get("totp_enrolled", False)),
                "state": v.get("state", m.get("state", "present")),
            }
        )
    return records


class FilterModule:
    """Filters for WireGuard tunnel addressing."""

    def filters(self) -> dict[str, Any]:
        return {
            "vpn_pool": vpn_pool,
            "vpn_pool_address": vpn_pool_address,
            "vpn_address_in": vpn_address_in,
            "vpn_peer_status": vpn_peer_status,
            "access_users_evidence": access_users_evidence,
            "access_totp_status": access_totp_status,
        }
