"""The vpn_pool filter: deterministic, collision-free tunnel addresses, clear errors."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from tests.helpers import load_plugin

plugin = load_plugin("plugins/filter/vpn_pool.py")


def test_entries_take_free_addresses_in_list_order_after_the_reserved_ones():
    result = plugin.vpn_pool(["alice", {"name": "bob"}, "carol"], "10.200.0.0/24", ["10.200.0.1"])
    assert result == {"alice": "10.200.0.2", "bob": "10.200.0.3", "carol": "10.200.0.4"}
    assert list(result) == ["alice", "bob", "carol"]


def test_the_same_input_gives_the_same_addresses():
    users = [{"name": f"user{i}"} for i in range(50)]
    assert plugin.vpn_pool(users, "10.200.0.0/24") == plugin.vpn_pool(list(users), "10.200.0.0/24")


def test_appending_an_entry_never_moves_the_existing_ones():
    before = plugin.vpn_pool(["alice", "bob"], "10.200.0.0/24", ["10.200.0.1"])
    after = plugin.vpn_pool(["alice", "bob", "dave"], "10.200.0.0/24", ["10.200.0.1"])
    assert {k: after[k] for k in before} == before
    assert after["dave"] not in before.values()


def test_pinned_addresses_are_kept_and_skipped_by_the_others():
    result = plugin.vpn_pool(
        ["alice", {"name": "bob", "address": "10.200.0.2/32"}], "10.200.0.0/29", ["10.200.0.1"]
    )
    assert result == {"alice": "10.200.0.3", "bob": "10.200.0.2"}


def test_no_two_entries_share_an_address():
    result = plugin.vpn_pool([f"u{i}" for i in range(253)], "10.200.0.0/24", ["10.200.0.1"])
    assert len(set(result.values())) == 253
    assert "10.200.0.1" not in result.values()
    assert "10.200.0.0" not in result.values()
    assert "10.200.0.255" not in result.values()


def test_exhausted_pool_names_who_got_no_address():
    with pytest.raises(
        AnsibleFilterError, match=r"10\.200\.0\.0/30 is exhausted: no address left for bob"
    ):
        plugin.vpn_pool(["alice", "bob"], "10.200.0.0/30", ["10.200.0.1"])


@pytest.mark.parametrize(
    ("entries", "pool", "reserved", "message"),
    [
        (["alice", "alice"], "10.200.0.0/24", [], "listed twice"),
        ([{"state": "present"}], "10.200.0.0/24", [], "needs a name"),
        ([{"name": "a", "address": "10.9.9.9"}], "10.200.0.0/24", [], "not a usable host address"),
        ([{"name": "a", "address": "10.200.0.1"}], "10.200.0.0/24", ["10.200.0.1"], "already used"),
        (
            [{"name": "a", "address": "10.200.0.5"}, {"name": "b", "address": "10.200.0.5"}],
            "10.200.0.0/24",
            [],
            "already used by 'a'",
        ),
        (["a"], "10.200.0.1/24", [], "not a network"),
        (["a"], "not-a-pool", [], "not a network"),
        ("alice", "10.200.0.0/24", [], "expected a list"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(entries, pool, reserved, message):
    with pytest.raises(AnsibleFilterError, match=message):
        plugin.vpn_pool(entries, pool, reserved)


def test_ipv6_pools_work():
    assert plugin.vpn_pool(["a"], "fd00:200::/120", ["fd00:200::1"]) == {"a": "fd00:200::2"}


def test_pool_address_gives_the_nth_host_and_refuses_outside_the_pool():
    assert plugin.vpn_pool_address("10.200.0.0/24", 1) == "10.200.0.1"
    assert plugin.vpn_pool_address("10.200.0.0/24", "254") == "10.200.0.254"
    with pytest.raises(AnsibleFilterError, match="outside it"):
        plugin.vpn_pool_address("10.200.0.0/24", 255)


def test_the_filters_are_registered():
    assert set(plugin.FilterModule().filters()) == {
        "vpn_pool",
        "vpn_pool_address",
        "vpn_address_in",
        "vpn_peer_status",
        "access_users_evidence",
        "access_totp_status",
    }


def test_totp_status_follows_the_secret_files_on_the_host():
    users = [{"name": "alice"}, {"name": "dave", "state": "absent"}]
    assert plugin.access_totp_status(users, ["alice", "other"]) == [
        {"name": "alice", "state": "present", "totp_enrolled": True},
        {"name": "dave", "state": "absent", "totp_enrolled": False},
    ]


def test_address_in_networks():
    assert plugin.vpn_address_in("10.89.1.1", ["10.200.0.0/24", "10.89.1.1"])
    assert plugin.vpn_address_in("10.200.0.7", ["10.200.0.0/24"])
    assert not plugin.vpn_address_in("10.89.1.2", ["10.200.0.0/24", "10.89.1.1"])
    assert not plugin.vpn_address_in("", ["10.200.0.0/24"])
    with pytest.raises(AnsibleFilterError, match="not an address or network"):
        plugin.vpn_address_in("10.0.0.1", ["nope"])


KEY_A = "A" * 43 + "="
KEY_B = "B" * 43 + "="


def test_peer_status_reads_wg_latest_handshakes():
    users = [
        {"name": "alice", "public_key": KEY_A},
        {"name": "bob", "public_key": KEY_B, "state": "present"},
        {"name": "carol", "public_key": "C" * 43 + "=", "state": "absent"},
    ]
    addresses = {"alice": "10.200.0.2", "bob": "10.200.0.3", "carol": "10.200.0.4"}
    shown = f"{KEY_A}\t1763780000\n{KEY_B}\t0\n"
    assert plugin.vpn_peer_status(users, addresses, shown) == [
        {
            "name": "alice",
            "state": "present",
            "vpn_peer": "present",
            "vpn_address": "10.200.0.2",
            "last_handshake": 1763780000,
        },
        {
            "name": "bob",
            "state": "present",
            "vpn_peer": "present",
            "vpn_address": "10.200.0.3",
            "last_handshake": None,
        },
        {
            "name": "carol",
            "state": "absent",
            "vpn_peer": "absent",
            "vpn_address": "10.200.0.4",
            "last_handshake": None,
        },
    ]


def test_evidence_merges_both_roles_and_fills_what_one_did_not_see():
    vpn = [
        {
            "name": "alice",
            "state": "present",
            "vpn_peer": "present",
            "vpn_address": "10.200.0.2",
            "last_handshake": 5,
        }
    ]
    mfa = [
        {"name": "alice", "totp_enrolled": True, "state": "present"},
        {"name": "dave", "totp_enrolled": False, "state": "absent"},
    ]
    assert plugin.access_users_evidence(vpn, mfa) == [
        {
            "name": "alice",
            "vpn_peer": "present",
            "vpn_address": "10.200.0.2",
            "last_handshake": 5,
            "totp_enrolled": True,
            "state": "present",
        },
        {
            "name": "dave",
            "vpn_peer": "absent",
            "vpn_address": None,
            "last_handshake": None,
            "totp_enrolled": False,
            "state": "absent",
        },
    ]
    assert plugin.access_users_evidence(None, None) == []
