"""``RegistryProxy``: routing, the ``/v2/`` ping, refusals in OCI JSON, and a warm pull's traffic.

In-process against a counting upstream.  A whole image pulled twice costs the upstream nothing the
second time (the ping answered from memory, the tag fresh, every blob a hit); ``/v2/`` is answered
locally when the upstream cannot answer it; v1 and push requests are refused without reaching it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.config.model import Credential, Secret
from appliance.events import CacheStatus
from appliance.registry.api import PING_TTL
from tests.fixtures.counting_upstream import Auth, CountingUpstream, Image
from tests.fixtures.registry_proxy import UPSTREAM_NAME, ProxyUnderTest

REPO = "team/app"


@pytest.fixture
async def upstream() -> AsyncIterator[CountingUpstream]:
    async with CountingUpstream() as server:
        yield server


@pytest.fixture
async def proxy(upstream: CountingUpstream, tmp_path: Path) -> AsyncIterator[ProxyUnderTest]:
    async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 3600.0}) as under_test:
        yield under_test


async def pull(proxy: ProxyUnderTest, image: Image) -> list[CacheStatus]:
    """What a client does for one image: ping, manifest by tag, every blob; the statuses seen."""
    first = len(proxy.seen)
    response, _ = await proxy.get("/v2/")
    assert response.status == 200
    response, body = await proxy.get(f"/v2/{image.repository}/manifests/{image.tag}")
    assert response.status == 200 and body == image.manifest.body
    for digest in image.blob_digests:
        response, body = await proxy.get(f"/v2/{image.repository}/blobs/{digest}")
        assert response.status == 200 and body == image.blobs[digest]
    await proxy.blobs.wait_fills()
    return [event.status for event in proxy.seen[first:]]


async def test_a_warm_pull_makes_no_upstream_request(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    image = upstream.add_image(REPO, "v1", [b"a" * 1000, b"b" * 2000, b"c" * 3000])
    cold = await pull(proxy, image)
    assert cold == [CacheStatus.BYPASS, CacheStatus.MISS] + [CacheStatus.MISS] * 4
    cold_requests = upstream.count()

    warm = await pull(proxy, image)

    assert warm == [CacheStatus.HIT] * 6
    assert upstream.count() == cold_requests


async def test_each_request_publishes_exactly_one_event(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    image = upstream.add_image(REPO, "v1")
    await pull(proxy, image)
    await proxy.get(f"/v2/{REPO}/tags/list")
    await proxy.get("/v1/_ping")
    # ``request`` waits for at least one event per request; none may come late or twice.
    await proxy.blobs.wait_fills()
    assert len(proxy.seen) == 2 + len(image.blob_digests) + 2


async def test_the_ping_is_answered_from_memory_within_its_ttl(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    for _ in range(3):
        response, body = await proxy.get("/v2/")
        assert response.status == 200 and json.loads(body) == {}
    assert [event.status for event in proxy.seen] == [CacheStatus.BYPASS, CacheStatus.HIT, CacheStatus.HIT]
    assert upstream.count("GET", "/v2/") == 1

    proxy.clock.now += PING_TTL + 1
    await proxy.get("/v2/")
    assert upstream.count("GET", "/v2/") == 2


async def test_a_reload_forgets_the_remembered_ping(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    await proxy.get("/v2/")
    proxy.reconfigure(tag_ttl=60.0)
    await proxy.get("/v2/")
    assert upstream.count("GET", "/v2/") == 2


async def test_a_ping_with_client_credentials_always_goes_upstream(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    await proxy.get("/v2/")
    await proxy.get("/v2/", headers={"Authorization": "Bearer client-token"})
    assert upstream.count("GET", "/v2/") == 2
    assert upstream.matching("GET", "/v2/")[-1].authorization == "Bearer client-token"


@pytest.mark.parametrize("failure", [503, 429, None])
async def test_the_ping_is_answered_locally_while_the_upstream_cannot(
    upstream: CountingUpstream, proxy: ProxyUnderTest, failure: int | None
) -> None:
    if failure is None:
        await upstream.stop()
    else:
        upstream.failure = failure

    response, body = await proxy.get("/v2/")

    assert response.status == 200 and json.loads(body) == {}
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert proxy.last_event().status is CacheStatus.STALE
    # Not remembered: the next ping asks again.
    upstream.failure = None
    if failure is not None:
        await proxy.get("/v2/")
        assert upstream.count("GET", "/v2/") == 2


async def test_a_v1_request_is_refused_in_oci_json_without_reaching_upstream(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    response, body = await proxy.get("/v1/_ping")

    assert response.status == 405
    assert response.headers["Content-Type"].startswith("application/json")
    error = json.loads(body)["errors"][0]
    assert error["code"] == "UNSUPPORTED"
    assert "v1" in error["message"]
    assert proxy.last_event().status is CacheStatus.ERROR
    assert upstream.count() == 0


@pytest.mark.parametrize("method", ["PUT", "POST", "PATCH", "DELETE"])
async def test_a_push_is_refused_in_oci_json_while_push_is_disabled(
    upstream: CountingUpstream, proxy: ProxyUnderTest, method: str
) -> None:
    response, body = await proxy.request(method, f"/v2/{REPO}/blobs/uploads/", data=b"x")

    assert response.status == 405
    error = json.loads(body)["errors"][0]
    assert error["code"] == "UNSUPPORTED"
    assert method in error["message"] and proxy.registry.host in error["message"]
    assert upstream.count() == 0


async def test_a_push_is_relayed_when_push_is_allowed(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    proxy.reconfigure(allow_push=True)

    response, _ = await proxy.request("POST", f"/v2/{REPO}/blobs/uploads/", data=b"x")

    # The test upstream serves no uploads (404): what matters is that its answer came back.
    assert response.status == 404
    assert upstream.count("POST", f"/v2/{REPO}/blobs/uploads/") == 1
    assert proxy.last_event().status is CacheStatus.BYPASS


async def test_a_warm_pull_from_a_token_registry_asks_neither_the_registry_nor_its_realm(
    tmp_path: Path,
) -> None:
    async with CountingUpstream(auth=Auth.BEARER) as upstream:
        image = upstream.add_image(REPO, "v1", [b"a" * 1000, b"b" * 2000])
        upstream.realm = f"http://{UPSTREAM_NAME}:{upstream.port}/token"
        async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 3600.0}) as proxy:
            user, password = upstream.credentials
            credential = Credential(scope=proxy.registry.host, username=user, password=Secret(password))
            proxy.reconfigure_config(credentials=(credential,))
            cold = await pull(proxy, image)
            assert cold == [CacheStatus.BYPASS] + [CacheStatus.MISS] * 4
            cold_requests = upstream.count()
            assert upstream.count("GET", "/token") == 2  # one token for /v2/, one for the repository
            assert all(r.authorization is not None for r in upstream.matching(prefix=f"/v2/{REPO}/blobs/"))

            warm = await pull(proxy, image)

        assert warm == [CacheStatus.HIT] * 5
        assert upstream.count() == cold_requests
