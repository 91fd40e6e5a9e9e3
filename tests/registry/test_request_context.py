"""``RequestContext``'s parts: how a client and a CONNECT authority are named in logs, events and lookups."""

from __future__ import annotations

import pytest

from appliance.registry.request_context import Authority, ClientAddress


@pytest.mark.parametrize(
    ("peer", "shown"),
    [
        (("192.0.2.7", 51234), "192.0.2.7:51234"),
        (("::1", 40000, 0, 0), "[::1]:40000"),  # an IPv6 peername has four fields
        ("/run/appliance.sock", "-"),  # a Unix socket's peer has no address
        (None, "-"),
    ],
)
def test_a_client_is_shown_as_address_and_port_with_ipv6_in_brackets(peer: object, shown: str) -> None:
    assert str(ClientAddress.from_peer(peer)) == shown


def test_a_client_address_keeps_host_and_port_apart() -> None:
    client = ClientAddress.from_peer(("2001:db8::5", 443, 0, 0))
    assert (client.host, client.port) == ("2001:db8::5", 443)


@pytest.mark.parametrize(
    ("authority", "name"),
    [(Authority("registry.test"), "registry.test"), (Authority("lab.test", 5000), "lab.test:5000")],
)
def test_an_authority_is_named_as_registries_are_configured_with_port_443_left_out(
    authority: Authority, name: str
) -> None:
    assert str(authority) == name
