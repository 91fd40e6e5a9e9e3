"""Tag records on a real SeaweedFS: compare-and-swap, and refreshes that reach the upstream once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from appliance.fleet.bucket import Bucket
from appliance.fleet.leases import Leases
from appliance.fleet.tags import FetchTag, TagConflict, TagRecord, TagRecords, tag_lease, tag_name
from tests.fixtures.counting_upstream import CountingUpstream
from tests.fixtures.seaweedfs import SeaweedS3

REGISTRY, REPO, TAG = "registry.test", "library/alpine", "3.19"
MANIFEST = f"/v2/{REPO}/manifests/{TAG}"


@pytest.fixture
async def bucket(s3_server: SeaweedS3) -> AsyncIterator[Bucket]:
    async with Bucket(s3_server.fleet_config()) as opened:
        yield opened


def replica(bucket: Bucket, name: str) -> TagRecords:
    return TagRecords(bucket, Leases(bucket, name, f"http://{name}.test:3128", 6.0), wait_limit=10.0)


def head_of(upstream: CountingUpstream, session: aiohttp.ClientSession) -> FetchTag:
    async def fetch() -> tuple[str, str]:
        async with session.head(upstream.url + MANIFEST) as response:
            assert response.status == 200
            digest = response.headers["Docker-Content-Digest"]
            media_type = response.headers["Content-Type"]
        await asyncio.sleep(0.5)  # a slow upstream: the other replicas arrive while this one asks
        return digest, media_type

    return fetch


def test_names() -> None:
    assert tag_name(REGISTRY, REPO, TAG) == "tags/registry.test/library/alpine/3.19.json"
    assert tag_lease(REGISTRY, REPO, TAG).startswith("leases/tag/")
    assert tag_lease(REGISTRY, REPO, TAG) != tag_lease(REGISTRY, REPO, "3.20")


def test_an_accept_class_has_its_own_record_and_lease() -> None:
    oci = "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json"
    assert tag_name(REGISTRY, REPO, TAG, "default") == "tags/registry.test/library/alpine/3.19@default.json"
    named = tag_name(REGISTRY, REPO, TAG, oci)
    assert named.startswith("tags/registry.test/library/alpine/3.19@") and named.count("/") == 4
    assert len({tag_name(REGISTRY, REPO, TAG, k) for k in ("", "default", oci)}) == 3
    assert len({tag_lease(REGISTRY, REPO, TAG, k) for k in ("", "default", oci)}) == 3


async def test_waiters_ask_themselves_as_soon_as_the_holder_gives_up_with_nothing_to_share(
    bucket: Bucket,
) -> None:
    digest = "sha256:" + "4" * 64
    asked: list[str] = []

    async def fetch() -> tuple[str, str]:
        asked.append("ask")
        if len(asked) == 1:  # the lease holder's upstream answers with an error
            await asyncio.sleep(0.5)
            raise RuntimeError("upstream answered 503")
        return digest, "m"

    replicas = [replica(bucket, f"w{i}") for i in range(3)]
    started = time.monotonic()
    results = await asyncio.gather(
        *(r.refresh(REGISTRY, REPO, "gives-up", fetch, fresh_for=0.0) for r in replicas),
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    assert sum(isinstance(r, RuntimeError) for r in results) == 1, results
    assert {r.digest for r in results if isinstance(r, TagRecord)} == {digest}
    # Not the 10 s wait bound: the released lease with no new record sent them upstream at once.
    assert elapsed < 5.0, elapsed
    # The holder, then a waiter on its own (the other may find that one's record written already).
    assert 2 <= len(asked) <= 3, asked
    for r in replicas:
        await r.leases.close()


async def test_a_write_from_a_stale_read_is_refused(bucket: Bucket) -> None:
    a, b = replica(bucket, "a"), replica(bucket, "b")
    first = await a.write(REGISTRY, REPO, TAG, TagRecord("sha256:" + "1" * 64, "m", 1.0))
    with pytest.raises(TagConflict):  # b believed there was none
        await b.write(REGISTRY, REPO, TAG, TagRecord("sha256:" + "2" * 64, "m", 2.0))
    read = await b.read(REGISTRY, REPO, TAG)
    assert read == first
    second = await b.write(REGISTRY, REPO, TAG, TagRecord("sha256:" + "2" * 64, "m", 2.0, read.etag))
    with pytest.raises(TagConflict):  # a's ETag is stale now
        await a.write(REGISTRY, REPO, TAG, TagRecord("sha256:" + "3" * 64, "m", 3.0, first.etag))
    assert await a.read(REGISTRY, REPO, TAG) == second


async def test_three_replicas_refreshing_at_once_ask_the_upstream_once(bucket: Bucket) -> None:
    async with CountingUpstream() as upstream, aiohttp.ClientSession() as session:
        image = upstream.add_image(REPO, TAG)
        replicas = [replica(bucket, f"r{i}") for i in range(3)]
        fetch = head_of(upstream, session)
        records = await asyncio.gather(
            *(r.refresh(REGISTRY, REPO, TAG, fetch, fresh_for=60.0) for r in replicas)
        )
        assert upstream.count("HEAD", MANIFEST) == 1
        assert {record.digest for record in records} == {image.manifest.digest}
        assert sum(r.upstream_asks for r in replicas) == 1
        assert sum(r.coalesced for r in replicas) == 2
        # Fresh now: another round asks nobody.
        await asyncio.gather(*(r.refresh(REGISTRY, REPO, TAG, fetch, fresh_for=60.0) for r in replicas))
        assert upstream.count("HEAD", MANIFEST) == 1
        # Stale (fresh_for 0): once more for the fleet, and the record moves with the tag.
        moved = upstream.add_image(REPO, "other", layers=(b"new layer",))
        upstream.retag(REPO, TAG, moved.manifest.digest)
        again = await asyncio.gather(
            *(r.refresh(REGISTRY, REPO, TAG, fetch, fresh_for=0.0) for r in replicas)
        )
        assert upstream.count("HEAD", MANIFEST) == 2
        assert {record.digest for record in again} == {moved.manifest.digest}
        for r in replicas:
            await r.leases.close()
