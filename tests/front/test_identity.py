"""Identities inside tunnels (issue 17.2): a tunnel serves only the authority its CONNECT named and
was authenticated for; the reason phrases and header parsing the front door relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.access.verdicts import Outcome
from appliance.front.identity import parse_connect_headers, proxy_reason, single
from tests.fixtures.counting_upstream import CountingUpstream
from tests.fixtures.identity_engine import (
    PASSWORD,
    IdentityEngine,
    basic,
    open_tunnel,
    request,
    start_identity_engine,
)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[IdentityEngine]:
    async with CountingUpstream() as upstream:
        upstream.add_image("team/app", "latest")
        running = await start_identity_engine(tmp_path, upstream)
        try:
            yield running
        finally:
            await running.engine.close()


async def test_a_host_header_other_than_the_connect_authority_is_misdirected(setup: IdentityEngine) -> None:
    reader, writer = await open_tunnel(setup, setup.registry, basic("alice", PASSWORD))
    try:
        answer = await request(
            reader, writer, f"other.test:{setup.upstream.port}", "/v2/team/app/manifests/latest"
        )
        assert answer.startswith(b"HTTP/1.1 421 "), answer
        assert b"is not the CONNECT authority" in answer
        # The same tunnel still serves its own authority.
        answer = await request(reader, writer, setup.registry, "/v2/team/app/manifests/latest")
        assert answer.startswith(b"HTTP/1.1 200 "), answer
    finally:
        writer.close()
    assert setup.upstream.count(path="/v2/team/app/manifests/latest") == 1


async def test_a_host_header_with_another_port_is_misdirected(setup: IdentityEngine) -> None:
    reader, writer = await open_tunnel(setup, setup.registry, basic("alice", PASSWORD))
    try:
        answer = await request(reader, writer, "registry.test:1", "/v2/team/app/manifests/latest")
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 421 "), answer
    assert setup.upstream_requests() == 0


async def test_a_tls_server_name_other_than_the_connect_authority_is_misdirected(
    setup: IdentityEngine,
) -> None:
    reader, writer = await open_tunnel(setup, setup.registry, basic("alice", PASSWORD), sni="evil.test")
    try:
        answer = await request(reader, writer, setup.registry, "/v2/team/app/manifests/latest")
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 421 "), answer
    assert b"TLS server name 'evil.test'" in answer
    assert setup.upstream_requests() == 0


async def test_the_same_name_in_another_case_or_with_a_final_dot_is_the_same_authority(
    setup: IdentityEngine,
) -> None:
    reader, writer = await open_tunnel(setup, setup.registry, basic("alice", PASSWORD), sni="REGISTRY.test")
    try:
        answer = await request(reader, writer, setup.registry.upper(), "/v2/team/app/manifests/latest")
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_the_reason_phrase_says_what_to_change_for_each_outcome() -> None:
    url = "http://USER:PASSWORD@10.0.0.5:3128"
    assert proxy_reason(Outcome.MISSING, url).startswith(
        "Proxy Authentication Required: set HTTPS_PROXY=http://USER:PASSWORD@10.0.0.5:3128"
    )
    assert "wrong password" in proxy_reason(Outcome.REJECTED, url)
    assert "malformed" in proxy_reason(Outcome.MALFORMED, url)
    assert "appliance token create" in proxy_reason(Outcome.EXPIRED, url)


def test_connect_headers_are_read_by_lower_case_name_and_a_repeated_credential_is_malformed() -> None:
    head = b"CONNECT r.test:443 HTTP/1.1\r\nHost: r.test:443\r\nproxy-authorization: Basic eA==\r\n"
    headers = parse_connect_headers(head)
    assert single(headers.get("proxy-authorization")) == "Basic eA=="
    assert single(headers.get("missing")) is None
    twice = parse_connect_headers(head + b"Proxy-Authorization: Basic eQ==\r\n")
    assert single(twice.get("proxy-authorization")) not in (None, "Basic eA==", "Basic eQ==")
