"""Identity on the proxy port (issue 17.2), with the real curl: ``Proxy-Authorization`` on CONNECT and
on absolute-form requests, 407 for anything but a known identity, and nothing upstream before it."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.events import Event
from tests.fixtures.clients import CurlResult, curl
from tests.fixtures.counting_upstream import CountingUpstream
from tests.fixtures.identity_engine import (
    PASSWORD,
    IdentityEngine,
    basic,
    open_tunnel,
    request,
    start_identity_engine,
)

MANIFEST_ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


@pytest.fixture
async def upstream() -> AsyncIterator[CountingUpstream]:
    async with CountingUpstream() as upstream:
        upstream.add_image("team/app", "latest", layers=(b"layer one", b"layer two"))
        yield upstream


@pytest.fixture
async def setup(tmp_path: Path, upstream: CountingUpstream) -> AsyncIterator[IdentityEngine]:
    running = await start_identity_engine(tmp_path, upstream)
    try:
        yield running
    finally:
        await running.engine.close()


async def _pull_manifest(setup: IdentityEngine, proxy: str, *extra: str) -> CurlResult:
    url = f"https://{setup.registry}/v2/team/app/manifests/latest"
    return await asyncio.to_thread(
        curl, url, proxy=proxy, cacert=setup.ca_file, headers=MANIFEST_ACCEPT, extra=extra
    )


def _events(setup: IdentityEngine) -> list[Event]:
    return setup.engine.events.recent()


async def test_the_right_password_in_the_proxy_url_pulls_and_the_upstream_never_sees_proxy_authorization(
    setup: IdentityEngine,
) -> None:
    result = await _pull_manifest(setup, setup.proxy("alice", PASSWORD))
    assert result.status == 200, result.stderr
    assert setup.upstream_requests() >= 1
    assert all("Proxy-Authorization" not in r.headers for r in setup.upstream.requests)
    assert all(r.authorization is None for r in setup.upstream.requests)


@pytest.mark.parametrize(
    ("user", "password", "extra"),
    [
        (None, None, ()),
        ("alice", "not-the-password", ()),
        ("mallory", PASSWORD, ()),
        (None, None, ("--proxy-header", "Proxy-Authorization: Basic %%%not-base64")),
        (None, None, ("--proxy-header", "Proxy-Authorization: Basic " + base64.b64encode(b"alice").decode())),
    ],
    ids=["missing", "wrong-password", "unknown-user", "malformed-base64", "no-colon"],
)
async def test_bad_or_missing_proxy_credentials_get_407_and_nothing_goes_upstream(
    setup: IdentityEngine, user: str | None, password: str | None, extra: tuple[str, ...]
) -> None:
    result = await _pull_manifest(setup, setup.proxy(user, password), *extra)
    assert "CONNECT tunnel failed, response 407" in result.stderr
    assert result.headers["proxy-authenticate"] == 'Basic realm="registry-appliance"'
    assert setup.upstream_requests() == 0
    # The refusal's one audit record: nothing served, no identity, no secret.
    assert [(e.method, e.http_status, e.access, e.identity) for e in _events(setup)] == [
        ("CONNECT", 407, "unauthenticated", "")
    ]
    assert PASSWORD not in repr(_events(setup))
    assert setup.engine.identification.refused == 1


async def test_the_407_names_the_proxy_url_to_set_in_its_reason_phrase_and_challenges_basic(
    setup: IdentityEngine,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", setup.port)
    try:
        writer.write(f"CONNECT {setup.registry} HTTP/1.1\r\nHost: {setup.registry}\r\n\r\n".encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    finally:
        writer.close()
    status_line, *headers = head.split("\r\n")
    # Go clients print exactly the reason phrase and never retry a 407.
    assert status_line == (
        "HTTP/1.1 407 Proxy Authentication Required: "
        f"set HTTPS_PROXY=http://USER:PASSWORD@127.0.0.1:{setup.port} (credentials in the proxy URL)"
    )
    assert 'Proxy-Authenticate: Basic realm="registry-appliance"' in headers


async def test_a_robot_token_as_the_proxy_password_identifies_the_robot(setup: IdentityEngine) -> None:
    result = await _pull_manifest(setup, setup.proxy("ci", setup.robot))
    assert result.status == 200, result.stderr
    assert {event.identity for event in _events(setup)} == {"ci"}


async def test_every_request_decrypted_in_the_tunnel_carries_the_connect_identity(
    setup: IdentityEngine,
) -> None:
    blob = setup.upstream.add_blob(b"a third layer")
    reader, writer = await open_tunnel(setup, setup.registry, basic("alice", PASSWORD))
    try:
        # Two requests on one CONNECT: both are alice's, though neither carries a credential.
        first = await request(reader, writer, setup.registry, "/v2/team/app/manifests/latest")
        second = await request(reader, writer, setup.registry, f"/v2/team/app/blobs/{blob}")
    finally:
        writer.close()
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    events = _events(setup)
    assert len(events) == 2
    assert {event.identity for event in events} == {"alice"}


async def test_absolute_form_requests_need_proxy_credentials_too(setup: IdentityEngine) -> None:
    url = f"http://{setup.registry}/v2/team/app/manifests/latest"
    refused = await asyncio.to_thread(curl, url, proxy=setup.proxy(), headers=MANIFEST_ACCEPT)
    assert refused.status == 407
    assert refused.headers["proxy-authenticate"] == 'Basic realm="registry-appliance"'
    assert setup.upstream_requests() == 0
    served = await asyncio.to_thread(curl, url, proxy=setup.proxy("alice", PASSWORD), headers=MANIFEST_ACCEPT)
    assert served.status == 200, served.stderr
    assert all("Proxy-Authorization" not in r.headers for r in setup.upstream.requests)
    assert [(event.identity, event.access) for event in _events(setup)] == [
        ("", "unauthenticated"),
        ("alice", "allowed"),
    ]


async def test_the_canary_password_is_in_no_log_line_event_or_error(
    setup: IdentityEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _pull_manifest(setup, setup.proxy("alice", PASSWORD))
    await _pull_manifest(setup, setup.proxy("alice", PASSWORD + "x"))
    await _pull_manifest(setup, setup.proxy(PASSWORD, PASSWORD))
    refused = await _pull_manifest(setup, setup.proxy("alice", "wrong"))
    assert "response 407" in refused.stderr
    texts = [record.getMessage() for record in caplog.records]
    assert any(record.name == "appliance.identity" for record in caplog.records)
    assert not [text for text in texts if PASSWORD in text]
    assert not [event for event in _events(setup) if PASSWORD in repr(event)]
    assert PASSWORD not in refused.stderr and PASSWORD.encode() not in refused.body


async def test_with_client_authentication_off_no_proxy_credentials_are_needed(
    tmp_path: Path, upstream: CountingUpstream
) -> None:
    running = await start_identity_engine(tmp_path, upstream, enabled=False)
    try:
        result = await _pull_manifest(running, running.proxy())
        assert result.status == 200, result.stderr
        assert {event.identity for event in running.engine.events.recent()} == {""}
    finally:
        await running.engine.close()
