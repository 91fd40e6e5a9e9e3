"""Blob GET and HEAD through ``BlobService``, in-process against a counting upstream.

Each test asserts on what reached the upstream: a cached blob costs no upstream request, concurrent
misses for one digest cost one, and bytes that fail their digest are never kept.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from appliance.cache.blobstore import BlobKey, Kind
from appliance.events import CacheStatus
from tests.fixtures.counting_upstream import CountingUpstream, sha256_digest
from tests.fixtures.registry_proxy import ProxyUnderTest, until

LAYER = b"layer bytes " * 5000


@pytest.fixture
async def upstream() -> AsyncIterator[CountingUpstream]:
    async with CountingUpstream() as server:
        yield server


@pytest.fixture
async def proxy(upstream: CountingUpstream, tmp_path: Path) -> AsyncIterator[ProxyUnderTest]:
    async with ProxyUnderTest(upstream, tmp_path / "cache") as under_test:
        yield under_test


def blob_path(digest: str, repository: str = "team/app") -> str:
    return f"/v2/{repository}/blobs/{digest}"


async def test_a_blob_is_fetched_once_then_served_from_the_cache(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    digest = upstream.add_blob(LAYER)

    first, body = await proxy.get(blob_path(digest))
    assert first.status == 200 and body == LAYER
    assert first.headers["Docker-Content-Digest"] == digest
    assert proxy.last_event().status is CacheStatus.MISS
    await proxy.blobs.wait_fills()

    second, body = await proxy.get(blob_path(digest))
    assert second.status == 200 and body == LAYER
    assert proxy.last_event().status is CacheStatus.HIT
    assert upstream.count("GET", blob_path(digest)) == 1
    assert upstream.count() == 1


async def test_a_cached_blob_reaches_another_repository_after_one_upstream_head_there(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    digest = upstream.add_blob(LAYER)
    await proxy.get(blob_path(digest, "team/app"))
    await proxy.blobs.wait_fills()

    for _ in range(2):
        response, body = await proxy.get(blob_path(digest, "other/tool"))
        assert response.status == 200 and body == LAYER
        assert proxy.last_event().status is CacheStatus.HIT

    # Asked once in the new repository (then linked), never downloaded twice.
    assert upstream.count("HEAD", blob_path(digest, "other/tool")) == 1
    assert upstream.count("GET") == 1
    assert upstream.count() == 2


async def test_concurrent_misses_for_one_blob_make_one_upstream_request(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    digest = upstream.add_blob(LAYER)
    upstream.hold_blobs()
    repositories = ("team/one", "team/two", "team/three")
    pulls = [asyncio.create_task(proxy.get(blob_path(digest, name))) for name in repositories]
    # The first request's fill is waiting on the held upstream; the other two must join it.
    key = BlobKey.of(proxy.registry.host, Kind.BLOB, digest)

    def all_joined() -> bool:
        fill = proxy.blobs.fills.get(key)
        return fill is not None and len(fill.other_repositories) == 2

    await until(all_joined)
    upstream.release_blobs()
    answers = await asyncio.gather(*pulls)
    await until(lambda: len(proxy.seen) == 3)

    assert [(response.status, body == LAYER) for response, body in answers] == [(200, True)] * 3
    statuses = sorted(event.status for event in proxy.seen)
    assert statuses == sorted([CacheStatus.MISS, CacheStatus.COALESCED, CacheStatus.COALESCED])
    assert upstream.count("GET", prefix="/v2/") == 1


async def test_head_of_a_cached_blob_answers_locally_with_its_size(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    digest = upstream.add_blob(LAYER)
    await proxy.get(blob_path(digest))
    await proxy.blobs.wait_fills()

    response, body = await proxy.head(blob_path(digest))

    assert response.status == 200 and body == b""
    assert response.headers["Content-Length"] == str(len(LAYER))
    assert response.headers["Docker-Content-Digest"] == digest
    assert proxy.last_event().status is CacheStatus.HIT
    assert upstream.count("HEAD") == 0


async def test_head_of_an_uncached_blob_is_relayed_and_fills_nothing(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    digest = upstream.add_blob(LAYER)

    response, _ = await proxy.head(blob_path(digest))
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(LAYER))
    assert proxy.last_event().status is CacheStatus.BYPASS
    assert upstream.count("HEAD", blob_path(digest)) == 1
    assert upstream.count("GET") == 0

    await proxy.get(blob_path(digest))
    assert proxy.last_event().status is CacheStatus.MISS


async def test_a_range_of_a_cached_blob_is_a_206_with_those_bytes(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    digest = upstream.add_blob(LAYER)
    await proxy.get(blob_path(digest))
    await proxy.blobs.wait_fills()

    response, body = await proxy.get(blob_path(digest), headers={"Range": "bytes=10-19"})

    assert response.status == 206
    assert body == LAYER[10:20]
    assert response.headers["Content-Range"] == f"bytes 10-19/{len(LAYER)}"
    assert upstream.count("GET") == 1


async def test_an_unknown_blob_relays_the_upstream_404_and_is_asked_again_next_time(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    digest = sha256_digest(b"nobody has this")

    for _ in range(2):
        response, body = await proxy.get(blob_path(digest))
        assert response.status == 404
        assert json.loads(body)["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert upstream.count("GET", blob_path(digest)) == 2


async def test_bytes_that_fail_their_digest_reach_no_client_whole_and_are_not_cached(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    digest = upstream.add_blob(LAYER)
    corrupt = bytearray(LAYER)
    corrupt[len(corrupt) // 2] ^= 0xFF

    def lie(request: web.Request) -> web.StreamResponse | None:
        if request.method == "GET" and request.path.endswith(digest):
            return web.Response(body=bytes(corrupt), content_type="application/octet-stream")
        return None

    upstream.intercept = lie
    with pytest.raises(aiohttp.ClientPayloadError):
        await proxy.get(blob_path(digest))
    await proxy.blobs.wait_fills()
    assert await proxy.blobs.open(proxy.registry.host, digest) is None

    upstream.intercept = None
    response, body = await proxy.get(blob_path(digest))
    assert response.status == 200 and body == LAYER
    assert upstream.count("GET", blob_path(digest)) == 2


async def test_an_unreachable_upstream_on_a_miss_is_a_502_naming_the_registry(
    upstream: CountingUpstream, proxy: ProxyUnderTest
) -> None:
    digest = upstream.add_blob(LAYER)
    await upstream.stop()

    response, body = await proxy.get(blob_path(digest))

    assert response.status == 502
    error = json.loads(body)["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert proxy.registry.host in error["message"]
    assert proxy.last_event().status is CacheStatus.ERROR
