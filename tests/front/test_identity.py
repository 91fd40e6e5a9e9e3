"""Identities inside tunnels (issue 17.2): a tunnel serves only the authority its CONNECT named and
was authenticated for; the reason phrases and header parsing the front door relies on."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.access.verdicts import Outcome
from appliance.config.access import ClientMapping
from appliance.front import mirror
from appliance.front.identity import parse_connect_headers, proxy_reason, single
from tests.fixtures.clients import CurlResult, curl
from tests.fixtures.counting_upstream import CountingUpstream
from tests.fixtures.identity_engine import (
    BOB_PASSWORD,
    PASSWORD,
    IdentityEngine,
    basic,
    open_tunnel,
    request,
    start_identity_engine,
)

MANIFEST_ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


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


# -- the mirror endpoint (issue 17.3) ---------------------------------------------------------------


def _mirror_path(setup: IdentityEngine, path: str = "team/app/manifests/latest") -> str:
    return f"/v2/{mirror.path_segment(setup.registry)}/{path}"


async def _mirror_get(
    setup: IdentityEngine, path: str, *, user: str | None = None, **headers: str
) -> CurlResult:
    extra = ("-u", user) if user else ()
    return await asyncio.to_thread(
        curl, f"http://127.0.0.1:{setup.port}{path}", headers={**MANIFEST_ACCEPT, **headers}, extra=extra
    )


async def test_a_mirror_request_without_credentials_gets_401_with_a_bearer_challenge_naming_our_realm(
    setup: IdentityEngine,
) -> None:
    answer = await _mirror_get(setup, _mirror_path(setup))
    assert answer.status == 401
    repository = f"{mirror.path_segment(setup.registry)}/team/app"
    assert answer.headers["www-authenticate"] == (
        f'Bearer realm="http://127.0.0.1:{setup.port}/auth/token",service="registry-appliance",'
        f'scope="repository:{repository}:pull"'
    )
    ping = await _mirror_get(setup, "/v2/")
    assert ping.status == 401
    assert setup.upstream_requests() == 0


async def test_basic_users_and_robot_tokens_pull_from_the_mirror_and_their_authorization_stays_here(
    setup: IdentityEngine,
) -> None:
    assert (await _mirror_get(setup, _mirror_path(setup), user=f"alice:{PASSWORD}")).status == 200
    robot = await _mirror_get(setup, _mirror_path(setup), Authorization=f"Bearer {setup.robot}")
    assert robot.status == 200
    assert (await _mirror_get(setup, _mirror_path(setup), user=f"ci:{setup.robot}")).status == 200
    assert [event.identity for event in setup.engine.events.recent()] == ["alice", "ci", "ci"]
    assert setup.upstream_requests() >= 1
    assert all(r.authorization is None for r in setup.upstream.requests)
    wrong = await _mirror_get(setup, _mirror_path(setup), user="alice:wrong")
    assert wrong.status == 401 and "Bearer realm=" in wrong.headers["www-authenticate"]


async def test_the_token_flow_issues_a_short_lived_token_scoped_to_the_repositories_asked_for(
    setup: IdentityEngine,
) -> None:
    repository = f"{mirror.path_segment(setup.registry)}/team/app"
    query = f"service=registry-appliance&scope=repository:{repository}:pull"
    anonymous = await _mirror_get(setup, f"/auth/token?{query}")
    assert anonymous.status == 401 and anonymous.headers["www-authenticate"].startswith("Basic ")
    issued = await _mirror_get(setup, f"/auth/token?{query}", user=f"bob:{BOB_PASSWORD}")
    assert issued.status == 200
    body = json.loads(issued.body)
    assert body["expires_in"] == 300 and body["token"] == body["access_token"]
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert (await _mirror_get(setup, _mirror_path(setup), **bearer)).status == 200
    assert (await _mirror_get(setup, "/v2/", **bearer)).status == 200
    # Another repository needs another token: the challenge names the scope to ask for.
    other = await _mirror_get(setup, _mirror_path(setup, "team/other/manifests/latest"), **bearer)
    assert other.status == 401
    assert f"{mirror.path_segment(setup.registry)}/team/other:pull" in other.headers["www-authenticate"]
    forged = body["token"][:-4] + ("AAAA" if not body["token"].endswith("AAAA") else "BBBB")
    assert (await _mirror_get(setup, _mirror_path(setup), Authorization=f"Bearer {forged}")).status == 401
    # One audit record per decision: the refusals at the front door (401) and bob's pull.
    assert [(event.identity, event.access) for event in setup.engine.events.recent()] == [
        ("", "unauthenticated"),
        ("bob", "allowed"),
        ("", "unauthenticated"),
        ("", "unauthenticated"),
    ]
    assert BOB_PASSWORD not in repr(setup.engine.events.recent())


async def test_a_token_stops_working_as_soon_as_its_user_is_removed(setup: IdentityEngine) -> None:
    repository = f"{mirror.path_segment(setup.registry)}/team/app"
    issued = await _mirror_get(
        setup, f"/auth/token?scope=repository:{repository}:pull", user=f"bob:{BOB_PASSWORD}"
    )
    token = json.loads(issued.body)["token"]
    config = setup.engine.config
    users = tuple(user for user in config.access.users if user.name != "bob")
    setup.engine.apply(replace(config, access=replace(config.access, users=users)))
    answer = await _mirror_get(setup, _mirror_path(setup), Authorization=f"Bearer {token}")
    assert answer.status == 401


async def test_a_mapped_source_network_is_its_identity_without_credentials(
    tmp_path: Path,
) -> None:
    async with CountingUpstream() as upstream:
        upstream.add_image("team/app", "latest")
        running = await start_identity_engine(tmp_path, upstream)
        config = running.engine.config
        pool = (ClientMapping(ipaddress.ip_network("127.0.0.0/8"), "node-pool"),)
        running.engine.apply(replace(config, access=replace(config.access, clients=pool)))
        try:
            assert (await _mirror_get(running, _mirror_path(running))).status == 200
            wrong = await _mirror_get(running, _mirror_path(running), user="alice:wrong")
            assert wrong.status == 401  # a failed credential is never replaced by the network's identity
            assert [(e.identity, e.access) for e in running.engine.events.recent()] == [
                ("node-pool", "allowed"),
                ("", "unauthenticated"),
            ]
        finally:
            await running.engine.close()
