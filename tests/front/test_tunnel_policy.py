"""Which CONNECTs to non-intercepted hosts are tunnelled, judged on the addresses names resolve to."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from appliance.config.model import TunnelMode, TunnelPolicy
from appliance.front.tunnel_policy import (
    Resolver,
    TunnelDecision,
    Verdict,
    _ipv4_from_fib_trie,
    _ipv6_from_if_inet6,
    check_tunnel,
    own_interface_addresses,
)

DEFAULT = TunnelPolicy()
ALL = TunnelPolicy(mode=TunnelMode.ALL)
NONE = TunnelPolicy(mode=TunnelMode.NONE)
OWN = ("10.1.2.3", "fd00::2")  # the appliance's interface addresses in these tests


class FixedDns:
    """A resolver with a fixed table, counting lookups (a stand-in for DNS, not for our code)."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = table
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append((host, port))
        if host not in self.table:
            raise OSError(f"Name or service not known: {host}")
        return self.table[host]


DNS = {
    "registry.example.com": ["203.0.113.10", "2001:db8::10"],
    "internal.example.com": ["10.20.30.40"],
    "sneaky.example.com": ["203.0.113.11", "127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "loop.example.com": ["127.0.0.1"],
    "self.example.com": ["10.1.2.3"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
}


async def decide(
    policy: TunnelPolicy,
    host: str,
    port: int = 443,
    *,
    resolve: Resolver | None = None,
    own_ports: Sequence[int] = (),
) -> TunnelDecision:
    return await check_tunnel(
        policy, host, port, own_addresses=OWN, resolve=resolve or FixedDns(DNS), own_ports=own_ports
    )


# --- the default policy -------------------------------------------------------------------------


async def test_default_tunnels_a_public_host_on_443_to_the_checked_addresses() -> None:
    decision = await decide(DEFAULT, "registry.example.com")
    assert decision.allowed and decision.http_status == 200
    assert decision.addresses == ("203.0.113.10", "2001:db8::10")


async def test_default_tunnels_a_private_address_on_443() -> None:
    assert (await decide(DEFAULT, "internal.example.com")).allowed


async def test_default_refuses_other_ports() -> None:
    dns = FixedDns(DNS)
    decision = await decide(DEFAULT, "registry.example.com", 22, resolve=dns)
    assert decision.verdict is Verdict.REFUSED and decision.http_status == 403
    assert "443" in decision.reason
    assert dns.lookups == []  # refused before any DNS traffic


@pytest.mark.parametrize(
    ("host", "word"),
    [
        ("169.254.169.254", "link-local"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "own"),
        ("224.0.0.1", "multicast"),
        ("loop.example.com", "loopback"),
        ("metadata.example.com", "link-local"),
        ("self.example.com", "own"),
        ("mapped.example.com", "loopback"),
    ],
)
async def test_default_refuses_internal_targets(host: str, word: str) -> None:
    decision = await decide(DEFAULT, host)
    assert decision.verdict is Verdict.REFUSED
    assert word in decision.reason
    assert "\n" not in decision.reason


async def test_a_name_with_any_loopback_address_is_refused_whole() -> None:
    decision = await decide(DEFAULT, "sneaky.example.com")
    assert not decision.allowed
    assert "127.0.0.1" in decision.reason and decision.addresses == ()


async def test_an_ip_literal_is_not_looked_up() -> None:
    dns = FixedDns({})
    decision = await decide(DEFAULT, "203.0.113.5", resolve=dns)
    assert decision.allowed and decision.addresses == ("203.0.113.5",)
    assert dns.lookups == []


async def test_the_real_resolver_sees_localhost_as_loopback() -> None:
    decision = await check_tunnel(DEFAULT, "localhost", 443, own_addresses=())
    assert decision.verdict is Verdict.REFUSED
    assert "loopback" in decision.reason


async def test_a_name_that_does_not_resolve_is_a_502_not_a_403() -> None:
    decision = await decide(DEFAULT, "nowhere.example.com")
    assert decision.verdict is Verdict.UNRESOLVABLE and decision.http_status == 502
    assert "nowhere.example.com" in decision.reason


async def test_a_resolver_that_hangs_times_out() -> None:
    async def hang(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(30)
        return []

    decision = await check_tunnel(
        DEFAULT, "slow.example.com", 443, own_addresses=(), resolve=hang, resolve_timeout=0.1
    )
    assert decision.verdict is Verdict.UNRESOLVABLE and "timed out" in decision.reason


@pytest.mark.parametrize("host", ["", "bad host", "a/b", "x" * 300, "evil.test\r\nX: y"])
async def test_a_bad_connect_target_is_refused(host: str) -> None:
    dns = FixedDns(DNS)
    decision = await decide(DEFAULT, host, resolve=dns)
    assert decision.verdict is Verdict.REFUSED
    assert "\n" not in decision.reason and dns.lookups == []


@pytest.mark.parametrize("port", [0, -1, 70000])
async def test_an_invalid_port_is_refused(port: int) -> None:
    assert not (await decide(ALL, "registry.example.com", port)).allowed


# --- all / none ---------------------------------------------------------------------------------


async def test_all_tunnels_any_port_and_loopback() -> None:
    assert (await decide(ALL, "registry.example.com", 8443)).allowed
    decision = await decide(ALL, "loop.example.com", 5000)
    assert decision.allowed and decision.addresses == ("127.0.0.1",)


async def test_all_still_refuses_the_appliance_itself() -> None:
    assert not (await decide(ALL, "10.1.2.3", 22)).allowed
    assert not (await decide(ALL, "self.example.com", 443)).allowed
    looped = await decide(ALL, "127.0.0.1", 3128, own_ports=(3128,))
    assert not looped.allowed and "appliance itself" in looped.reason
    assert (await decide(ALL, "127.0.0.1", 3129, own_ports=(3128,))).allowed


@pytest.mark.parametrize("host", ["169.254.169.254", "0.0.0.0", "::", "224.0.0.1"])
async def test_all_still_refuses_metadata_unspecified_and_multicast(host: str) -> None:
    assert not (await decide(ALL, host, 80)).allowed


async def test_none_tunnels_nothing() -> None:
    decision = await decide(NONE, "registry.example.com")
    assert decision.verdict is Verdict.REFUSED and "none" in decision.reason


# --- list ---------------------------------------------------------------------------------------


LISTED = TunnelPolicy(
    mode=TunnelMode.LIST,
    hosts=("registry.example.com", "internal.example.com:8443", "*.corp.example", "[2001:db8::7]:443"),
)


async def test_list_tunnels_listed_hosts_only() -> None:
    dns = FixedDns({**DNS, "git.corp.example": ["10.5.5.5"]})
    assert (await decide(LISTED, "git.corp.example", resolve=dns)).allowed
    assert (await decide(LISTED, "internal.example.com", 8443, resolve=dns)).allowed
    refused = await decide(LISTED, "other.example.org", resolve=dns)
    assert not refused.allowed and "allow-list" in refused.reason
    assert ("other.example.org", 443) not in dns.lookups


async def test_a_listed_name_resolving_to_a_banned_address_is_refused() -> None:
    policy = TunnelPolicy(mode=TunnelMode.LIST, hosts=("self.example.com", "metadata.example.com"))
    assert not (await decide(policy, "self.example.com")).allowed
    assert not (await decide(policy, "metadata.example.com")).allowed


# --- own addresses ------------------------------------------------------------------------------


def test_own_interface_addresses_include_loopback() -> None:
    own = own_interface_addresses()
    assert "127.0.0.1" in own


def test_proc_parsers_read_local_addresses() -> None:
    fib_trie = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 192.0.2.2
        /32 host LOCAL
     |-- 192.0.2.255
        /32 link BROADCAST
"""
    assert _ipv4_from_fib_trie(fib_trie) == {"127.0.0.1", "192.0.2.2"}
    if_inet6 = (
        "00000000000000000000000000000001 01 80 10 80       lo\n"
        "fd000000000000000000000000000002 02 40 00 80     eth0\n"
    )
    assert _ipv6_from_if_inet6(if_inet6) == {"::1", "fd00::2"}
