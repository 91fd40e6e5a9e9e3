"""What kind of address a connection would reach, allow-list matching and the system resolver."""

from __future__ import annotations

import pytest

from appliance.upstream.addresses import AddressClass, classify_address, list_matches, resolve_system

OWN = ("10.1.2.3", "fd00::2")  # the appliance's interface addresses in these tests


# --- address classes (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", AddressClass.LOOPBACK),
        ("127.8.9.10", AddressClass.LOOPBACK),
        ("::1", AddressClass.LOOPBACK),
        ("::ffff:127.0.0.1", AddressClass.LOOPBACK),
        ("169.254.169.254", AddressClass.LINK_LOCAL),
        ("fe80::1", AddressClass.LINK_LOCAL),
        ("fe80::1%eth0", AddressClass.LINK_LOCAL),
        ("0.0.0.0", AddressClass.UNSPECIFIED),
        ("0.1.2.3", AddressClass.UNSPECIFIED),
        ("::", AddressClass.UNSPECIFIED),
        ("224.0.0.1", AddressClass.MULTICAST),
        ("ff02::1", AddressClass.MULTICAST),
        ("255.255.255.255", AddressClass.RESERVED),
        ("240.0.0.1", AddressClass.RESERVED),
        ("10.1.2.3", AddressClass.OWN),
        ("fd00::2", AddressClass.OWN),
        ("10.9.9.9", AddressClass.PRIVATE),
        ("192.168.1.1", AddressClass.PRIVATE),
        ("100.64.0.1", AddressClass.PRIVATE),
        ("fd12::1", AddressClass.PRIVATE),
        ("8.8.8.8", AddressClass.PUBLIC),
        ("2606:4700::1111", AddressClass.PUBLIC),
        ("not an address", AddressClass.RESERVED),
    ],
)
def test_addresses_are_classified(address: str, expected: AddressClass) -> None:
    assert classify_address(address, OWN) is expected


def test_list_entries_match_host_port_and_suffix() -> None:
    hosts = ("registry.example.com", "internal.example.com:8443", "*.corp.example", "[2001:db8::7]:443")
    assert list_matches(hosts, "registry.example.com", 443)
    assert not list_matches(hosts, "registry.example.com", 8443)  # a bare host means 443
    assert list_matches(hosts, "internal.example.com", 8443)
    assert not list_matches(hosts, "internal.example.com", 443)
    assert list_matches(hosts, "git.corp.example", 443)
    assert list_matches(hosts, "a.b.corp.example", 443)
    assert not list_matches(hosts, "corp.example", 443)  # the apex is not a sub-domain
    assert not list_matches(hosts, "evilcorp.example", 443)
    assert list_matches(hosts, "2001:db8::7", 443)
    assert not list_matches(("bad:port:entry", "host:notaport"), "host", 443)


async def test_the_system_resolver_answers_addresses_without_duplicates() -> None:
    addresses = await resolve_system("localhost", 443)
    assert "127.0.0.1" in addresses or "::1" in addresses
    assert len(addresses) == len(set(addresses))
