"""Hard cap with LRU eviction, leases, pins, and expiry of untouched entries."""

from __future__ import annotations

import asyncio

from appliance.cache import BlobCache, BlobKey, Kind, Leases
from appliance.events import CacheStatus
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256

SIZE = 100_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _fill(cache: BlobCache, data: bytes, repository: str = REPO) -> CacheStatus:
    reader = await cache.open_or_fill(REG, repository, sha256(data), Upstream(data).fetch)
    assert await read_all(reader.chunks()) == data
    await reader.close()
    await cache.wait_fills()
    return reader.status


async def _cached(cache: BlobCache, data: bytes) -> bool:
    return await cache.index.get(BlobKey.of(REG, Kind.BLOB, sha256(data))) is not None


def test_leases_count_until_the_last_release() -> None:
    leases = Leases()
    key = BlobKey.of(REG, Kind.BLOB, sha256(b"x"))
    leases.acquire(key)
    leases.acquire(key)
    leases.release(key)
    assert key in leases and len(leases) == 1
    leases.release(key)
    assert key not in leases and len(leases) == 0


async def test_least_recently_used_goes_first_and_usage_never_exceeds_the_cap(
    make_cache: CacheFactory,
) -> None:
    clock = Clock()
    cache = await make_cache(max_size=3 * SIZE, clock=clock)
    a, b, c, d = (payload(SIZE, seed) for seed in range(4))
    for blob in (a, b, c):
        clock.now += 1
        await _fill(cache, blob)
    clock.now += 1
    hit = await cache.open(REG, sha256(a))  # a is now the most recently used
    assert hit is not None
    await hit.close()
    clock.now += 1
    await _fill(cache, d)
    assert [await _cached(cache, x) for x in (a, b, c, d)] == [True, False, True, True]
    usage = await cache.usage()
    assert usage.bytes <= usage.cap and usage.evicted == 1


async def test_entry_being_read_is_never_evicted(make_cache: CacheFactory) -> None:
    clock = Clock()
    cache = await make_cache(max_size=2 * SIZE, clock=clock)
    old, mid, new = (payload(SIZE, seed) for seed in range(3))
    await _fill(cache, old)
    clock.now += 1
    await _fill(cache, mid)
    reader = await cache.open(REG, sha256(old))
    assert reader is not None
    clock.now -= 10  # `old` stays the least recently used despite the open
    await cache.index.touch(BlobKey.of(REG, Kind.BLOB, sha256(old)), clock.now)
    clock.now += 20
    await _fill(cache, new)
    assert await _cached(cache, old) and not await _cached(cache, mid)
    assert await read_all(reader.chunks()) == old
    await reader.close()


async def test_when_everything_is_in_use_a_new_blob_bypasses(make_cache: CacheFactory) -> None:
    cache = await make_cache(max_size=SIZE)
    held, other = payload(SIZE, 1), payload(SIZE, 2)
    await _fill(cache, held)
    reader = await cache.open(REG, sha256(held))
    assert reader is not None
    assert await _fill(cache, other) is CacheStatus.BYPASS
    assert await _cached(cache, held)
    await reader.close()
    assert await _fill(cache, other) is CacheStatus.MISS
    assert not await _cached(cache, held)


async def test_fills_in_progress_count_against_the_cap(make_cache: CacheFactory) -> None:
    cache = await make_cache(max_size=SIZE + SIZE // 2)
    first, second = payload(SIZE, 1), payload(SIZE, 2)
    gate = asyncio.Event()
    slow = Upstream(first, gate=gate)
    reader = await cache.open_or_fill(REG, REPO, sha256(first), slow.fetch)
    assert reader.status is CacheStatus.MISS
    assert (await cache.usage()).filling == SIZE
    other = await cache.open_or_fill(REG, REPO, sha256(second), Upstream(second).fetch)
    assert other.status is CacheStatus.BYPASS
    assert await read_all(other.chunks()) == second
    await other.close()
    gate.set()
    assert await read_all(reader.chunks()) == first
    await reader.close()
    await cache.wait_fills()  # the reader finished at verification; the commit follows
    usage = await cache.usage()
    assert (usage.bytes, usage.filling) == (SIZE, 0)


async def test_pinned_repository_is_not_evicted_including_blobs_fetched_after_pinning(
    make_cache: CacheFactory,
) -> None:
    clock = Clock()
    cache = await make_cache(max_size=3 * SIZE, clock=clock)
    pinned_old, pinned_new, loose, incoming = (payload(SIZE, seed) for seed in range(4))
    await _fill(cache, pinned_old, repository="keep")
    assert await cache.pin(REG, "keep", True) == 1
    clock.now += 1
    await _fill(cache, pinned_new, repository="keep")
    clock.now += 1
    await _fill(cache, loose, repository="other")
    clock.now += 1
    await _fill(cache, incoming, repository="other")
    assert await _cached(cache, pinned_old) and await _cached(cache, pinned_new)
    assert not await _cached(cache, loose)
    [keep] = [r for r in await cache.list_images() if r.repository == "keep"]
    assert keep.pinned and all(b.pinned for b in keep.blobs)

    assert await cache.pin(REG, "keep", False) == 2
    clock.now += 1
    await _fill(cache, loose, repository="other")
    assert not await _cached(cache, pinned_old)


async def test_entries_untouched_for_inactive_seconds_expire(make_cache: CacheFactory) -> None:
    clock = Clock()
    cache = await make_cache(inactive=100.0, clock=clock)
    stale, fresh, pinned = (payload(1000, seed) for seed in range(3))
    await _fill(cache, stale)
    await _fill(cache, pinned, repository="keep")
    await cache.pin(REG, "keep", True)
    clock.now += 90
    await _fill(cache, fresh)
    clock.now += 20
    assert await cache.evictor.expire() == 1
    assert [await _cached(cache, x) for x in (stale, fresh, pinned)] == [False, True, True]
    assert (await cache.usage()).bytes == 2000


async def test_housekeeping_task_expires_entries_in_the_background(make_cache: CacheFactory) -> None:
    clock = Clock()
    cache = await make_cache(inactive=10.0, clock=clock, housekeeping_interval=0.02)
    data = payload(1000)
    await _fill(cache, data)
    clock.now += 11
    for _ in range(200):
        if not await _cached(cache, data):
            break
        await asyncio.sleep(0.01)
    assert not await _cached(cache, data)
