"""``GatedUpstream``: the circuit breaker in front of a down registry, and pass-through relays.

In-process against a counting upstream: a registry that refused a connection is not asked again
until its backoff has passed (the requests in between fail or go STALE at once), an upstream that
answers (even 503) is not "down", and a relayed request carries only the headers meant for it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.config.model import Credential, Secret
from appliance.events import CacheStatus
from tests.fixtures.counting_upstream import Auth, CountingUpstream
from tests.fixtures.registry_proxy import ProxyUnderTest

REPO = "team/app"
TAGS = f"/v2/{REPO}/tags/list"


@pytest.fixture
async def upstream() -> AsyncIterator[CountingUpstream]:
    async with CountingUpstream() as server:
        yield server


async def test_a_registry_that_refused_a_connection_is_skipped_until_its_backoff_passes(
    upstream: CountingUpstream, tmp_path: Path
) -> None:
    image = upstream.add_image(REPO, "v1")
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        port = upstream.port
        await upstream.stop()
        refused, _ = await proxy.get(f"/v2/{REPO}/blobs/{image.layer_digests[0]}")
        assert refused.status == 502
        assert proxy.health.unreachable(proxy.registry.host) is not None

        # The registry is back, but within the backoff nobody asks it.
        async with CountingUpstream(port=port, blobs=upstream.blobs) as back:
            skipped, body = await proxy.get(f"/v2/{REPO}/blobs/{image.layer_digests[0]}")
            assert skipped.status == 502
            assert "not retried for another" in json.loads(body)["errors"][0]["message"]
            assert back.count() == 0

            proxy.clock.now += proxy.health.backoff + 1
            retried, body = await proxy.get(f"/v2/{REPO}/blobs/{image.layer_digests[0]}")
            assert retried.status == 200 and body == image.blobs[image.layer_digests[0]]
            assert back.count("GET") == 1
            assert proxy.health.unreachable(proxy.registry.host) is None


async def test_an_upstream_that_answers_with_an_error_is_not_marked_down(
    upstream: CountingUpstream, tmp_path: Path
) -> None:
    upstream.add_image(REPO, "v1")
    upstream.failure = 503
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        first, _ = await proxy.get(TAGS)
        assert first.status == 503
        assert proxy.health.unreachable(proxy.registry.host) is None

        upstream.failure = None
        second, _ = await proxy.get(TAGS)
        assert second.status == 200
    assert upstream.count("GET", TAGS) == 2


async def test_a_relay_is_bypass_and_carries_only_the_headers_meant_for_upstream(
    upstream: CountingUpstream, tmp_path: Path
) -> None:
    upstream.add_image(REPO, "v1")
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        response, body = await proxy.get(
            TAGS + "?n=5", headers={"Accept": "application/json", "Cookie": "session=secret", "X-Custom": "1"}
        )
        assert response.status == 200
        assert json.loads(body) == {"name": REPO, "tags": ["v1"]}
        assert proxy.last_event().status is CacheStatus.BYPASS

    (seen,) = upstream.matching("GET", TAGS)
    assert seen.query == "n=5"
    assert seen.headers["Accept"] == "application/json"
    assert "Cookie" not in seen.headers
    assert "X-Custom" not in seen.headers


async def test_a_relay_to_a_basic_auth_registry_carries_the_configured_credentials(
    tmp_path: Path,
) -> None:
    async with CountingUpstream(auth=Auth.BASIC) as upstream:
        upstream.add_image(REPO, "v1")
        async with ProxyUnderTest(upstream, tmp_path) as proxy:
            user, password = upstream.credentials
            credential = Credential(scope=proxy.registry.host, username=user, password=Secret(password))
            proxy.reconfigure_config(credentials=(credential,))

            response, _ = await proxy.get(TAGS)

        assert response.status == 200
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        assert upstream.matching("GET", TAGS)[-1].authorization == expected


async def test_a_relay_without_credentials_passes_the_upstream_challenge_back(tmp_path: Path) -> None:
    async with CountingUpstream(auth=Auth.BEARER) as upstream:
        async with ProxyUnderTest(upstream, tmp_path) as proxy:
            response, body = await proxy.get(TAGS)

        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
        assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"
