"""The network floor's default ranges, its handling of mapped and scoped addresses, and the warning."""

from __future__ import annotations

import ipaddress

import pytest

from appliance.access.network import (
    PRIVATE_NETWORKS,
    ClientFloor,
    beyond_loopback,
    exposure_warning,
    floor_for,
    parse_address,
)

DEFAULT_TABLE = [
    ("127.0.0.1", True),
    ("127.255.0.7", True),
    ("10.1.2.3", True),
    ("172.16.0.1", True),
    ("172.31.255.254", True),
    ("172.32.0.1", False),  # just past RFC 1918's 172.16/12
    ("192.168.7.7", True),
    ("192.169.0.1", False),
    ("100.64.0.1", True),  # carrier-grade NAT
    ("100.127.255.254", True),
    ("100.128.0.1", False),
    ("169.254.1.1", True),  # link-local
    ("8.8.8.8", False),
    ("1.1.1.1", False),
    ("203.0.113.9", False),
    ("::1", True),
    ("fd12:3456::1", True),  # unique-local
    ("fc00::1", True),
    ("fe80::1", True),
    ("fe80::1%eth0", True),  # scoped, as the socket reports it
    ("2001:4860:4860::8888", False),
    ("::ffff:10.0.0.1", True),  # IPv4-mapped, judged as IPv4
    ("::ffff:8.8.8.8", False),
    ("::ffff:127.0.0.1", True),
]


@pytest.mark.parametrize(("source", "allowed"), DEFAULT_TABLE)
def test_default_floor_lets_in_only_private_sources(source: str, allowed: bool) -> None:
    assert ClientFloor().allows(source) is allowed


def test_mapped_ipv4_is_judged_by_the_ipv4_networks() -> None:
    floor = ClientFloor((ipaddress.ip_network("198.51.100.0/24"),))
    assert floor.allows("::ffff:198.51.100.7")
    assert not floor.allows("::ffff:198.51.101.7")
    assert parse_address("::ffff:198.51.100.7") == ipaddress.ip_address("198.51.100.7")


def test_configured_networks_replace_the_default() -> None:
    floor = floor_for((ipaddress.ip_network("203.0.113.0/24"),), client_auth=False)
    assert floor.allows("203.0.113.5")
    assert not floor.allows("127.0.0.1")
    assert not floor.allows("10.0.0.1")


def test_client_auth_opens_the_default_floor_but_not_a_configured_one() -> None:
    assert floor_for(None, client_auth=True).allows("8.8.8.8")
    assert not floor_for(None, client_auth=False).allows("8.8.8.8")
    configured = (ipaddress.ip_network("10.0.0.0/8"),)
    assert not floor_for(configured, client_auth=True).allows("8.8.8.8")


def test_a_peer_without_an_ip_address_is_local() -> None:
    assert ClientFloor(()).allows("-")
    assert not ClientFloor(()).allows("not-an-address")


def test_default_networks_are_the_documented_ones() -> None:
    assert {str(n) for n in PRIVATE_NETWORKS} == {
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    }


@pytest.mark.parametrize(
    ("host", "exposed"),
    [
        ("0.0.0.0", True),
        ("", True),
        ("::", True),
        ("192.168.1.10", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("appliance.example", True),
    ],
)
def test_beyond_loopback(host: str, exposed: bool) -> None:
    assert beyond_loopback(host) is exposed


def test_warning_only_when_exposed_without_client_auth() -> None:
    warning = exposure_warning(("0.0.0.0",), ClientFloor(), client_auth=False)
    assert warning is not None and "WITHOUT client authentication" in warning and "10.0.0.0/8" in warning
    assert exposure_warning(("127.0.0.1",), ClientFloor(), client_auth=False) is None
    assert exposure_warning(("0.0.0.0",), ClientFloor(), client_auth=True) is None


def test_the_engine_floor_opens_only_when_client_authentication_is_on() -> None:
    from appliance.access.network import client_floor

    assert client_floor(None, access_enabled=True).allows("8.8.8.8")
    assert not client_floor(None, access_enabled=False).allows("8.8.8.8")
