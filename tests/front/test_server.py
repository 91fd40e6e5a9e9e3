"""Front-door parsing that needs no sockets."""

import pytest

from appliance.front.server import ConnectRefused, parse_connect_target


def test_parses_host_port_and_ipv6_targets() -> None:
    assert parse_connect_target(b"CONNECT Registry.Test:443 HTTP/1.1\r\nHost: x") == ("registry.test", 443)
    assert parse_connect_target(b"CONNECT [::1]:5000 HTTP/1.1") == ("::1", 5000)


@pytest.mark.parametrize(
    "head",
    [
        b"CONNECT registry.test HTTP/1.1",
        b"CONNECT registry.test:0 HTTP/1.1",
        b"CONNECT registry.test:99999 HTTP/1.1",
        b"CONNECT :443 HTTP/1.1",
        b"CONNECT user@host:443 HTTP/1.1",
        b"CONNECT host:443",
        b"CONNECT h\xffst:443 HTTP/1.1",
    ],
)
def test_bad_connect_targets_are_refused_with_400(head: bytes) -> None:
    with pytest.raises(ConnectRefused) as info:
        parse_connect_target(head)
    assert info.value.status == 400 and info.value.reason
