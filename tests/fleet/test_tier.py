"""The fleet tier in one process: two replicas' caches, their endpoints on loopback, a real SeaweedFS.

Each replica is a real ``BlobCache`` with a ``FleetService`` under it and its ``/_fleet/`` endpoint
served by aiohttp on a loopback port (its ``advertise_url``); the upstream is the cache tests' fake
``Upstream`` (it counts fetches, can pause, lie or cut off), since here the registry layer is not
under test.  The e2e tests (tests/e2e/test_fleet.py) run the same with engines and a real registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp import web

from appliance.cache import BlobCache
from appliance.cache.blobstore import Kind
from appliance.config.model import CacheConfig
from appliance.digests import parse_digest
from appliance.errors import IntegrityError
from appliance.fleet.service import FleetService
from appliance.fleet.store import object_name
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256
from tests.fixtures.process import free_port
from tests.fixtures.s3_strip_proxy import StripProxy
from tests.fixtures.seaweedfs import SeaweedS3, bucket_keys, pending_uploads

SIZE = 3 * 1024 * 1024


@dataclass
class Replica:
    cache: BlobCache
    service: FleetService
    runner: web.ServerRunner


Make = Callable[[str], Awaitable[Replica]]


@pytest.fixture
async def replicas(tmp_path: Path, s3_server: SeaweedS3) -> AsyncIterator[Make]:
    fleet = s3_server.fleet_config()
    made: list[Replica] = []

    async def make(name: str) -> Replica:
        port = free_port()
        config = replace(fleet, replica_id=name, advertise_url=f"http://127.0.0.1:{port}")
        cache = BlobCache.on_disk(tmp_path / name, CacheConfig(max_size=1 << 34, min_free_disk=0))
        await cache.start()
        service = FleetService(config, cache)
        await service.start()
        runner = web.ServerRunner(web.Server(service.handle))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        made.append(Replica(cache, service, runner))
        return made[-1]

    yield make
    for replica in made:
        await replica.runner.cleanup()
        await replica.service.close()
        await replica.cache.close()


async def read(replica: Replica, digest: str, upstream: Upstream) -> bytes:
    async with await replica.cache.open_or_fill(REG, REPO, digest, upstream.fetch) as reader:
        return await read_all(reader.chunks())


async def test_a_follower_streams_the_owners_fill_and_the_upstream_serves_it_once(replicas: Make) -> None:
    a, b = await replicas("a"), await replicas("b")
    data = payload(SIZE, seed=1)
    digest = sha256(data)
    gate = asyncio.Event()
    upstream = Upstream(data, gate=gate)
    owner = asyncio.ensure_future(read(a, digest, upstream))
    await upstream.first_sent.wait()  # a owns the lease and is mid-fill
    follower = asyncio.ensure_future(read(b, digest, upstream))
    await asyncio.sleep(0.3)
    gate.set()
    assert await owner == data and await follower == data
    assert upstream.fetches == 1
    await a.service.tier.wait_idle()
    assert (a.service.status().lease_wins, b.service.status().lease_losses) == (1, 1)
    assert b.service.status().follow_bytes == SIZE
    # Published once verified, and the lease is gone.
    info = await a.service.bucket.head(object_name(Kind.BLOB, parse_digest(digest)))
    assert info is not None and info.size == SIZE
    assert [lease async for lease in a.service.bucket.list("leases/")] == []


async def test_wrong_bytes_from_the_upstream_are_never_published(
    replicas: Make, s3_server: SeaweedS3
) -> None:
    a = await replicas("a")
    claimed = sha256(b"what the manifest said")
    upstream = Upstream(payload(SIZE + 1024 * 1024 * 6, seed=2), chunk=1024 * 1024)  # past one 8 MiB part
    with pytest.raises(IntegrityError):
        await read(a, claimed, upstream)
    await a.service.tier.wait_idle()
    prefix = a.service.bucket.location.prefix
    assert not any("/blobs/" in key for key in bucket_keys(s3_server, prefix))
    assert pending_uploads(s3_server, prefix) == []
    assert [lease async for lease in a.service.bucket.list("leases/")] == []
    assert "not published" in a.service.status().last_error


async def test_an_upstream_cut_off_mid_fill_publishes_nothing(replicas: Make, s3_server: SeaweedS3) -> None:
    a = await replicas("a")
    data = payload(10 * 1024 * 1024, seed=3)
    upstream = Upstream(data, chunk=1024 * 1024, fail_after=9 * 1024 * 1024)
    with pytest.raises(Exception):  # noqa: B017 - the fill's own error, whatever the fill calls it
        await read(a, sha256(data), upstream)
    await a.service.tier.wait_idle()
    prefix = a.service.bucket.location.prefix
    assert not any("/blobs/" in key for key in bucket_keys(s3_server, prefix))
    assert pending_uploads(s3_server, prefix) == []


async def test_a_second_replica_reads_the_bucket_and_not_the_upstream(replicas: Make) -> None:
    a, b = await replicas("a"), await replicas("b")
    data = payload(SIZE, seed=4)
    digest = sha256(data)
    upstream = Upstream(data)
    assert await read(a, digest, upstream) == data
    await a.service.tier.wait_idle()
    assert await read(b, digest, upstream) == data
    assert upstream.fetches == 1 and b.service.status().l2_hits == 1


async def test_with_the_bucket_gone_a_replica_still_serves_from_the_upstream(
    tmp_path: Path, s3_server: SeaweedS3
) -> None:
    proxy = StripProxy(s3_server, [])  # strips nothing: the bucket, until the proxy stops
    await proxy.start()
    cache = BlobCache.on_disk(tmp_path / "a", CacheConfig(max_size=1 << 34, min_free_disk=0))
    await cache.start()
    service = FleetService(s3_server.fleet_config(endpoint=proxy.endpoint), cache)
    await service.start()
    try:
        await proxy.close()
        data = payload(SIZE, seed=5)
        upstream = Upstream(data)
        assert await read(Replica(cache, service, None), sha256(data), upstream) == data  # type: ignore[arg-type]
        assert upstream.fetches == 1
        assert "lease" in service.status().last_error
    finally:
        await service.close()
        await cache.close()


async def test_tag_checks_at_once_on_three_replicas_ask_the_upstream_once_per_accept_class(
    replicas: Make,
) -> None:
    made = [await replicas(name) for name in "abc"]
    named = {"default": "sha256:" + "d" * 64, "oci": "sha256:" + "0" * 64}
    asked: list[str] = []

    def check_for(klass: str) -> Callable[[], Awaitable[tuple[str, str]]]:
        async def check() -> tuple[str, str]:
            asked.append(klass)
            await asyncio.sleep(0.3)  # the others arrive while the lease holder asks
            return named[klass], "application/vnd.oci.image.manifest.v1+json"

        return check

    tiers = [replica.service.tier for replica in made]
    answers = await asyncio.gather(
        *(
            tier.refresh_tag(REG, REPO, "latest", klass, check_for(klass), fresh_for=0.0)
            for tier in tiers
            for klass in named
        )
    )
    assert sorted(asked) == ["default", "oci"]
    assert answers == [named["default"], named["oci"]] * 3


async def test_with_the_bucket_gone_a_tag_check_asks_the_upstream_itself(
    tmp_path: Path, s3_server: SeaweedS3
) -> None:
    proxy = StripProxy(s3_server, [])
    await proxy.start()
    cache = BlobCache.on_disk(tmp_path / "a", CacheConfig(max_size=1 << 34, min_free_disk=0))
    await cache.start()
    service = FleetService(s3_server.fleet_config(endpoint=proxy.endpoint), cache)
    await service.start()
    asked: list[str] = []

    async def check() -> tuple[str, str]:
        asked.append("HEAD")
        return "sha256:" + "e" * 64, "application/vnd.oci.image.manifest.v1+json"

    try:
        await proxy.close()
        digest = await service.tier.refresh_tag(REG, REPO, "latest", "default", check, fresh_for=60.0)
        assert (digest, asked) == ("sha256:" + "e" * 64, ["HEAD"])
    finally:
        await service.close()
        await cache.close()
