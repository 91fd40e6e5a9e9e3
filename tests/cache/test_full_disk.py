"""The cache on a real full filesystem (a small tmpfs): it serves on and stores nothing it cannot.

Issue 15, item 4: cached manifests keep being served when access-time writes fail, manifests that
cannot be stored are still answered, a fill that hits ENOSPC passes the rest of the blob through to
its readers, and the cache reports its disk as full until there is room again.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cache import BlobCache, ManifestCache
from appliance.cache.storage_health import DiskState
from appliance.events import CacheStatus
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256
from tests.fixtures.tmpfs import MIB, fill_up, small_tmpfs

MEDIA = "application/vnd.oci.image.manifest.v1+json"


def manifest(n: int) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": MEDIA, "n": n, "pad": "x" * 200}).encode()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", 8 * MIB) as mounted:
        yield mounted


async def test_cached_manifests_are_served_and_use_records_dropped_when_the_disk_is_full(
    make_cache: CacheFactory, disk: Path
) -> None:
    cache = await make_cache(directory=disk / "cache")
    manifests = ManifestCache(cache)
    body = manifest(1)
    digest = sha256(body)
    assert await manifests.put(REG, REPO, digest, MEDIA, body, tag="1.0", accept_class="oci")

    fill_up(disk)
    # What a cached pull does: the tag record, the body, and (on a re-fetch) the access-time and
    # reference writes, which the full disk refuses.
    record = await manifests.get_tag(REG, REPO, "1.0", "oci")
    assert record is not None and record.digest == digest
    stored = await manifests.get_by_digest(REG, digest)
    assert stored is not None and stored.body == body
    assert await manifests.put(REG, "other/repo", digest, MEDIA, body, tag="1.0", accept_class="oci")
    await manifests.touch_tag(REG, REPO, "1.0", "oci")

    assert cache.health.dropped_records >= 1
    assert cache.health.state is DiskState.FULL
    usage = await cache.usage()
    assert usage.storage is not None and usage.storage.state is DiskState.FULL
    # Still served after all that.
    again = await manifests.get_by_digest(REG, digest)
    assert again is not None and again.body == body


async def test_a_manifest_that_cannot_be_stored_is_reported_not_raised(
    make_cache: CacheFactory, disk: Path
) -> None:
    cache = await make_cache(directory=disk / "cache")
    manifests = ManifestCache(cache)
    fill_up(disk)
    body = manifest(2)
    digest = sha256(body)

    assert await manifests.put(REG, REPO, digest, MEDIA, body, tag="2.0", accept_class="oci") is False

    assert await manifests.get_by_digest(REG, digest) is None  # nothing half-stored
    assert cache.health.state is DiskState.FULL
    assert cache.health.write_failures >= 1
    assert "No space left on device" in cache.health.last_failure or "full" in cache.health.last_failure


async def _start_fill_then_fill_the_disk(
    cache: BlobCache, upstream: Upstream, disk: Path, readers: int
) -> list[asyncio.Task[bytes]]:
    """Readers of one fill; the disk fills up after the fill has stored its first chunk."""
    assert upstream.gate is not None

    async def read() -> bytes:
        async with await cache.open_or_fill(REG, REPO, sha256(upstream.data), upstream.fetch) as reader:
            return await read_all(reader.chunks())

    tasks = [asyncio.create_task(read()) for _ in range(readers)]
    await upstream.first_sent.wait()
    fill = cache.fills.get(next(iter(cache.fills.reserved_keys)))
    assert fill is not None
    while fill.written == 0:  # the first chunk is on disk: storage worked until now
        await fill.changed.wait()
    await asyncio.to_thread(fill_up, disk)
    upstream.gate.set()
    return tasks


async def test_a_fill_that_hits_enospc_passes_the_blob_through_to_its_readers(
    make_cache: CacheFactory, disk: Path
) -> None:
    cache = await make_cache(directory=disk / "cache")
    data = payload(5 * MIB, seed=4)
    upstream = Upstream(data, chunk=256 * 1024, gate=asyncio.Event())

    tasks = await _start_fill_then_fill_the_disk(cache, upstream, disk, readers=3)
    results = await asyncio.gather(*tasks)
    await cache.wait_fills()

    assert all(r == data for r in results)
    assert upstream.fetches == 1  # the readers shared one upstream fetch to the end
    assert cache.health.passthrough_fills == 1
    assert cache.health.state is DiskState.FULL
    assert await cache.open(REG, sha256(data)) is None  # nothing committed
    assert os.listdir(disk / "cache" / "tmp") == []  # the temp file is gone
    assert cache.evictor.reserved == 0


async def test_a_slow_reader_of_a_pass_through_fill_gets_every_byte_in_bounded_memory(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    with small_tmpfs(tmp_path / "disk", 32 * MIB) as disk:
        await _slow_reader_on(await make_cache(directory=disk / "cache"), disk)


async def _slow_reader_on(cache: BlobCache, disk: Path) -> None:
    data = payload(24 * MIB, seed=5)  # three times what a pass-through fill may hold
    upstream = Upstream(data, chunk=512 * 1024, gate=asyncio.Event())
    digest = sha256(data)
    held: list[int] = []

    async def slow_read() -> bytes:
        out = bytearray()
        async with await cache.open_or_fill(REG, REPO, digest, upstream.fetch) as reader:
            async for chunk in reader.chunks(size=256 * 1024):
                out += chunk
                fill = cache.fills.get(next(iter(cache.fills.reserved_keys), None))  # type: ignore[arg-type]
                if fill is not None and fill.passthrough:
                    held.append(fill.held())
                await asyncio.sleep(0)  # yields to the fill: it must wait for us, not run ahead
        return bytes(out)

    task = asyncio.create_task(slow_read())
    await upstream.first_sent.wait()
    fill = cache.fills.get(next(iter(cache.fills.reserved_keys)))
    assert fill is not None
    while fill.written == 0:
        await fill.changed.wait()
    await asyncio.to_thread(fill_up, disk)
    upstream.gate.set()  # type: ignore[union-attr]

    assert await task == data
    assert held, "the fill never went pass-through"
    assert max(held) <= 8 * MIB + 512 * 1024


async def test_a_request_after_storage_failed_passes_through_and_storing_resumes_with_room(
    make_cache: CacheFactory, disk: Path
) -> None:
    cache = await make_cache(directory=disk / "cache")
    filler = fill_up(disk)
    await cache.usage()  # a status view looks at the disk
    data = payload(3 * MIB, seed=6)
    upstream = Upstream(data)

    async with await cache.open_or_fill(REG, REPO, sha256(data), upstream.fetch) as reader:
        assert reader.status is CacheStatus.BYPASS
        assert await read_all(reader.chunks()) == data

    filler.unlink()
    usage = await cache.usage()
    assert usage.storage is not None and usage.storage.state is DiskState.OK
    async with await cache.open_or_fill(REG, REPO, sha256(data), upstream.fetch) as reader:
        assert reader.status is CacheStatus.MISS
        assert await read_all(reader.chunks()) == data
    await cache.wait_fills()
    hit = await cache.open(REG, sha256(data))
    assert hit is not None
    await hit.close()


async def test_a_request_joining_a_fill_that_lost_its_storage_fetches_on_its_own(
    make_cache: CacheFactory, disk: Path
) -> None:
    cache = await make_cache(directory=disk / "cache")
    data = payload(5 * MIB, seed=8)
    upstream = Upstream(data, chunk=256 * 1024, gate=asyncio.Event())
    [first] = await _start_fill_then_fill_the_disk(cache, upstream, disk, readers=1)
    fill = cache.fills.get(next(iter(cache.fills.reserved_keys)))
    assert fill is not None
    while not fill.passthrough:
        await fill.changed.wait()

    async with await cache.open_or_fill(REG, REPO, sha256(data), upstream.fetch) as late:
        assert late.status is CacheStatus.BYPASS  # the fill no longer holds the bytes it needs
        assert await read_all(late.chunks()) == data
    assert await first == data
    assert upstream.fetches == 2
