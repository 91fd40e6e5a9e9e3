"""Manifest GET and HEAD through ``ManifestService``, in-process against a counting upstream.

Pinned here: digests served from the cache, tags fresh for their TTL and then revalidated with a
HEAD (never a GET when unchanged), a moved tag fetched again, and the cached copy served STALE when
the upstream is down, overloaded or rate-limiting.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from appliance.events import CacheStatus
from tests.fixtures.counting_upstream import OCI_MANIFEST, CountingUpstream, Image
from tests.fixtures.registry_proxy import ProxyUnderTest

REPO = "team/app"
TAG_PATH = f"/v2/{REPO}/manifests/v1"


@pytest.fixture
async def upstream() -> AsyncIterator[CountingUpstream]:
    async with CountingUpstream() as server:
        yield server


@pytest.fixture
def image(upstream: CountingUpstream) -> Image:
    return upstream.add_image(REPO, "v1", [b"one", b"two"])


def digest_path(digest: str) -> str:
    return f"/v2/{REPO}/manifests/{digest}"


async def test_a_tag_within_its_ttl_is_served_from_the_cache_without_asking_upstream(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 3600.0}) as proxy:
        first, body = await proxy.get(TAG_PATH)
        assert first.status == 200 and body == image.manifest.body
        assert first.headers["Docker-Content-Digest"] == image.digest
        assert first.headers["Content-Type"] == OCI_MANIFEST
        assert proxy.last_event().status is CacheStatus.MISS

        second, body = await proxy.get(TAG_PATH)
        assert second.status == 200 and body == image.manifest.body
        assert proxy.last_event().status is CacheStatus.HIT
    assert upstream.count() == 1


async def test_a_manifest_by_digest_is_served_from_the_cache_once_fetched(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        await proxy.get(TAG_PATH)
        for method in ("GET", "HEAD"):
            response, body = await proxy.request(method, digest_path(image.digest))
            assert response.status == 200
            assert response.headers["Docker-Content-Digest"] == image.digest
            assert body == (image.manifest.body if method == "GET" else b"")
            assert proxy.last_event().status is CacheStatus.HIT
    assert upstream.count() == 1


async def test_an_expired_tag_is_revalidated_with_a_head_and_served_from_the_cache(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 0.0}) as proxy:
        await proxy.get(TAG_PATH)
        response, body = await proxy.get(TAG_PATH)

        assert response.status == 200 and body == image.manifest.body
        assert proxy.last_event().status is CacheStatus.REVALIDATED
    assert upstream.count("GET", TAG_PATH) == 1
    assert upstream.count("HEAD", TAG_PATH) == 1


async def test_a_moved_tag_is_fetched_again_and_the_new_manifest_served(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 0.0}) as proxy:
        await proxy.get(TAG_PATH)
        moved = upstream.add_image(REPO, "v1", [b"three"])
        assert moved.digest != image.digest

        response, body = await proxy.get(TAG_PATH)

        assert response.status == 200 and body == moved.manifest.body
        assert response.headers["Docker-Content-Digest"] == moved.digest
        assert proxy.last_event().status is CacheStatus.MISS
    assert upstream.count("GET", TAG_PATH) == 2


async def test_head_of_a_moved_tag_relays_the_upstream_answer_without_a_get(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 0.0}) as proxy:
        await proxy.get(TAG_PATH)
        moved = upstream.add_image(REPO, "v1", [b"three"])

        response, _ = await proxy.head(TAG_PATH)

        assert response.status == 200
        assert response.headers["Docker-Content-Digest"] == moved.digest
        assert proxy.last_event().status is CacheStatus.BYPASS
    assert upstream.count("GET", TAG_PATH) == 1


@pytest.mark.parametrize("status", [503, 429])
async def test_an_expired_tag_is_served_stale_while_the_upstream_answers_an_error(
    upstream: CountingUpstream, image: Image, tmp_path: Path, status: int
) -> None:
    async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 0.0}) as proxy:
        await proxy.get(TAG_PATH)
        upstream.failure = status

        response, body = await proxy.get(TAG_PATH)

        assert response.status == 200 and body == image.manifest.body
        event = proxy.last_event()
        assert event.status is CacheStatus.STALE
        assert str(status) in event.message


async def test_an_expired_tag_is_served_stale_while_the_upstream_is_unreachable(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 0.0}) as proxy:
        await proxy.get(TAG_PATH)
        await upstream.stop()

        for method in ("GET", "HEAD"):
            response, body = await proxy.request(method, TAG_PATH)
            assert response.status == 200
            assert response.headers["Docker-Content-Digest"] == image.digest
            assert body == (image.manifest.body if method == "GET" else b"")
            assert proxy.last_event().status is CacheStatus.STALE


async def test_a_tag_never_fetched_while_the_upstream_is_unreachable_is_a_502(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        await upstream.stop()

        response, body = await proxy.get(TAG_PATH)

        assert response.status == 502
        assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        assert proxy.last_event().status is CacheStatus.ERROR


async def test_head_of_an_uncached_tag_is_relayed_and_caches_nothing(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 3600.0}) as proxy:
        response, _ = await proxy.head(TAG_PATH)
        assert response.status == 200
        assert response.headers["Docker-Content-Digest"] == image.digest
        assert proxy.last_event().status is CacheStatus.BYPASS

        await proxy.get(TAG_PATH)
        assert proxy.last_event().status is CacheStatus.MISS
    assert upstream.count("HEAD", TAG_PATH) == 1
    assert upstream.count("GET", TAG_PATH) == 1


async def test_an_unknown_tag_relays_the_upstream_404_body(
    upstream: CountingUpstream, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        response, body = await proxy.get(f"/v2/{REPO}/manifests/nope")

        assert response.status == 404
        assert json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_a_manifest_whose_body_does_not_match_its_digest_is_refused_and_not_cached(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    def tampered(request: web.Request) -> web.StreamResponse | None:
        if request.path == digest_path(image.digest):
            return web.Response(body=image.manifest.body + b" ", content_type=OCI_MANIFEST)
        return None

    upstream.intercept = tampered
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        response, body = await proxy.get(digest_path(image.digest))
        assert response.status == 502
        assert image.digest in json.loads(body)["errors"][0]["message"]

        upstream.intercept = None
        response, body = await proxy.get(digest_path(image.digest))
        assert response.status == 200 and body == image.manifest.body
        assert proxy.last_event().status is CacheStatus.MISS


async def test_a_tag_whose_digest_header_contradicts_its_body_is_refused(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    def lying_header(request: web.Request) -> web.StreamResponse | None:
        if request.path == TAG_PATH:
            headers = {"Docker-Content-Digest": "sha256:" + "0" * 64}
            return web.Response(body=image.manifest.body, content_type=OCI_MANIFEST, headers=headers)
        return None

    upstream.intercept = lying_header
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        response, _ = await proxy.get(TAG_PATH)

        assert response.status == 502
        assert proxy.last_event().status is CacheStatus.ERROR
        assert await proxy.manifests.get_by_digest(proxy.registry.host, image.digest) is None


async def test_a_moved_tag_whose_new_manifest_cannot_be_fetched_is_served_stale(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    def get_fails(request: web.Request) -> web.StreamResponse | None:
        if request.method == "GET" and request.path == TAG_PATH:
            return web.json_response({"errors": [{"code": "UNAVAILABLE", "message": "busy"}]}, status=503)
        return None

    async with ProxyUnderTest(upstream, tmp_path, registry={"tag_ttl": 0.0}) as proxy:
        await proxy.get(TAG_PATH)
        upstream.add_image(REPO, "v1", [b"three"])  # the HEAD sees the tag moved ...
        upstream.intercept = get_fails  # ... and the GET for the new manifest fails

        response, body = await proxy.get(TAG_PATH)

        assert response.status == 200 and body == image.manifest.body
        event = proxy.last_event()
        assert event.status is CacheStatus.STALE
        assert "503" in event.message
    assert upstream.count("HEAD", TAG_PATH) == 1
    assert upstream.count("GET", TAG_PATH) == 2
