"""BlobCache: hits, misses, single-flight streaming fills, failures, bypass, restarts."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.cache import INDEX_FILE, BlobCache, BlobKey, BlobSource, FillProgress, Kind
from appliance.config.model import CacheConfig
from appliance.errors import IntegrityError, UpstreamError
from appliance.events import CacheStatus
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256, tmp_files

MIB = 1024 * 1024


async def _until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until ``condition()`` holds, checking it every loop turn or so: on state, not on time."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def test_miss_then_hit_fetches_upstream_once_and_serves_identical_bytes(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    cache = await make_cache()
    data = payload(MIB + 17)
    up = Upstream(data)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    assert reader.status is CacheStatus.MISS
    assert await read_all(reader.chunks()) == data
    await reader.close()
    await _settle(cache)

    again = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    assert again.status is CacheStatus.HIT
    assert again.size == len(data)
    assert again.path is not None and again.path.read_bytes() == data
    assert await read_all(again.chunks()) == data
    await again.close()
    assert up.fetches == 1
    assert up.closed == 1


async def test_same_digest_for_two_registries_is_two_entries(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(1000)
    digest = sha256(data)
    await _fill(cache, REG, digest, Upstream(data))
    assert await cache.open("other.example", digest) is None
    await _fill(cache, "other.example", digest, Upstream(data))
    usage = await cache.usage()
    assert usage.entries == 2
    assert {r.registry for r in usage.registries} == {REG, "other.example"}


async def test_wrong_bytes_leave_nothing_cached_and_every_reader_gets_integrity_error(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    cache = await make_cache()
    good = payload(300_000)
    bad = payload(300_000, seed=1)
    liar = Upstream(bad, delay=0.01)
    readers = await asyncio.gather(
        *(cache.open_or_fill(REG, REPO, sha256(good), liar.fetch) for _ in range(3))
    )
    for reader in readers:
        with pytest.raises(IntegrityError, match="hashing to"):
            await read_all(reader.chunks())
        await reader.close()
    await _settle(cache)
    assert liar.fetches == 1
    assert await cache.open(REG, sha256(good)) is None
    assert tmp_files(tmp_path / "cache") == []
    assert (await cache.usage()).entries == 0

    honest = Upstream(good)
    await _fill(cache, REG, sha256(good), honest)
    hit = await cache.open(REG, sha256(good))
    assert hit is not None and await read_all(hit.chunks()) == good
    await hit.close()


async def test_upstream_cut_off_half_way_raises_upstream_error_and_caches_nothing(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    cache = await make_cache()
    data = payload(512 * 1024)
    cut = Upstream(data, fail_after=256 * 1024)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), cut.fetch)
    with pytest.raises(UpstreamError, match="after 262144 bytes"):
        await read_all(reader.chunks())
    await reader.close()
    await _settle(cache)
    assert await cache.open(REG, sha256(data)) is None
    assert tmp_files(tmp_path / "cache") == []
    assert cut.closed == 1


async def test_body_shorter_than_content_length_is_an_integrity_error(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(1000)
    short = Upstream(data, size=2000)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), short.fetch)
    with pytest.raises(IntegrityError, match="cut off at 1000 of 2000"):
        await read_all(reader.chunks())
    await reader.close()


async def test_content_length_disagreeing_with_expected_size_fails_before_storing(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache()
    data = payload(1000)
    with pytest.raises(IntegrityError, match="announced 1000 bytes, expected 999"):
        await cache.open_or_fill(REG, REPO, sha256(data), Upstream(data).fetch, expected_size=999)
    assert (await cache.usage()).entries == 0


async def test_unknown_size_and_sha512_digest_are_verified_and_committed(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(200_000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    reader = await cache.open_or_fill(REG, REPO, digest, Upstream(data, size=None).fetch)
    assert await read_all(reader.chunks()) == data
    assert reader.size == len(data)
    await reader.close()
    await _settle(cache)
    hit = await cache.open(REG, digest)
    assert hit is not None and hit.size == len(data)
    await hit.close()
    assert (await cache.usage()).bytes == len(data)


async def test_concurrent_requests_share_one_fetch_and_all_stream_before_the_fill_ends(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache()
    data = payload(2 * MIB)
    gate = asyncio.Event()
    up = Upstream(data, chunk=256 * 1024, gate=gate)
    digest = sha256(data)
    readers = await asyncio.gather(
        *(cache.open_or_fill(REG, f"repo{i}", digest, up.fetch) for i in range(10))
    )
    assert up.fetches == 1
    statuses = sorted(r.status for r in readers)
    assert statuses.count(CacheStatus.MISS) == 1
    assert statuses.count(CacheStatus.COALESCED) == 9

    # The upstream is stuck after its first chunk: every reader must get those bytes now.
    iters = [r.chunks() for r in readers]
    firsts = await asyncio.wait_for(asyncio.gather(*(anext(it) for it in iters)), timeout=5)
    assert all(f == data[: len(f)] and f for f in firsts)
    assert cache.inflight()[0].done < len(data)
    assert cache.inflight()[0].readers == 10

    gate.set()
    rests = await asyncio.gather(*(read_all(it) for it in iters))
    for first, rest in zip(firsts, rests, strict=True):
        assert first + rest == data
    for reader in readers:
        await reader.close()
    await _settle(cache)
    listing = {r.repository for r in await cache.list_images()}
    assert listing == {f"repo{i}" for i in range(10)}


async def test_fetch_error_before_first_byte_reaches_every_waiter_and_is_not_cached(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache()
    data = payload(100)
    down = Upstream(data, fail_before=UpstreamError(REG, "connection refused"), gate=asyncio.Event())
    waiters = asyncio.gather(
        *(cache.open_or_fill(REG, f"repo{i}", sha256(data), down.fetch) for i in range(5)),
        return_exceptions=True,
    )
    # All five find the fill in flight before it fails: the four that joined it are on record.
    key = BlobKey.of(REG, Kind.BLOB, sha256(data))
    await _until(lambda: (fill := cache.fills.get(key)) is not None and len(fill.other_repositories) == 4)
    assert down.gate is not None
    down.gate.set()
    results = await waiters
    assert down.fetches == 1
    assert all(isinstance(r, UpstreamError) and "connection refused" in str(r) for r in results)
    await _fill(cache, REG, sha256(data), Upstream(data))


async def test_fetch_raising_a_foreign_error_still_reaches_every_waiter(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(100)
    timeout = TimeoutError("upstream timed out")
    down = Upstream(data, fail_before=timeout)
    results = await asyncio.gather(
        *(cache.open_or_fill(REG, REPO, sha256(data), down.fetch) for _ in range(3)), return_exceptions=True
    )
    assert results == [timeout] * 3
    assert cache.inflight() == [] and (await cache.usage()).filling == 0


async def test_fill_finishes_after_the_client_that_started_it_goes_away(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(MIB)
    up = Upstream(data, chunk=64 * 1024, delay=0.002)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    it = reader.chunks()
    await anext(it)
    del it  # the client stops reading half-way
    await reader.close()
    await _settle(cache)
    hit = await cache.open(REG, sha256(data))
    assert hit is not None and await read_all(hit.chunks()) == data
    await hit.close()


async def test_client_cancelled_while_waiting_for_fetch_does_not_cancel_the_fill(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache()
    data = payload(10_000)
    gate = asyncio.Event()
    up = Upstream(data)
    real_fetch = up.fetch

    async def slow_fetch():  # type: ignore[no-untyped-def]
        await gate.wait()
        return await real_fetch()

    task = asyncio.create_task(cache.open_or_fill(REG, REPO, sha256(data), slow_fetch))
    await _until(lambda: cache.fills.get(BlobKey.of(REG, Kind.BLOB, sha256(data))) is not None)
    assert not task.done()  # waiting for the upstream's answer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    await _settle(cache)
    hit = await cache.open(REG, sha256(data))
    assert hit is not None
    await hit.close()


async def test_range_during_a_fill_returns_bytes_already_on_disk_and_follows_the_rest(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache()
    data = payload(MIB)
    gate = asyncio.Event()
    up = Upstream(data, chunk=128 * 1024, gate=gate)
    first = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    await up.first_sent.wait()
    ranged = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    assert ranged.status is CacheStatus.COALESCED
    head = await asyncio.wait_for(read_all(ranged.chunks(1000, 5000)), timeout=5)
    assert head == data[1000:5000]
    tail_task = asyncio.create_task(read_all(ranged.chunks(700_000, 900_000)))
    gate.set()
    assert await tail_task == data[700_000:900_000]
    assert await read_all(first.chunks()) == data
    await first.close()
    await ranged.close()


async def test_slow_reader_does_not_hold_back_the_fill(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(2 * MIB)
    up = Upstream(data, chunk=256 * 1024)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    it = reader.chunks()
    got = [await anext(it)]
    await _settle(cache)  # the fill completes while the reader has read one chunk
    assert up.sent == len(data)
    assert await cache.open(REG, sha256(data)) is not None
    got.append(await read_all(it))
    assert b"".join(got) == data
    await reader.close()


async def test_blob_larger_than_the_cap_is_passed_through_not_stored(make_cache: CacheFactory) -> None:
    cache = await make_cache(max_size=1000)
    data = payload(5000)
    up = Upstream(data)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    assert reader.status is CacheStatus.BYPASS
    assert await read_all(reader.chunks()) == data
    await reader.close()
    assert up.closed == 1
    assert (await cache.usage()).entries == 0
    assert await cache.open(REG, sha256(data)) is None


async def test_free_disk_below_watermark_bypasses(make_cache: CacheFactory) -> None:
    cache = await make_cache(min_free_disk=1 << 60)
    data = payload(5000)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), Upstream(data).fetch)
    assert reader.status is CacheStatus.BYPASS
    assert await read_all(reader.chunks(10, 20)) == data[10:20]
    await reader.close()
    assert (await cache.usage()).entries == 0


async def test_bypass_of_wrong_bytes_raises_integrity_error_at_the_end(make_cache: CacheFactory) -> None:
    cache = await make_cache(max_size=10)
    data = payload(5000)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), Upstream(payload(5000, seed=9)).fetch)
    with pytest.raises(IntegrityError):
        await read_all(reader.chunks())
    await reader.close()


async def test_progress_is_reported_while_filling(make_cache: CacheFactory) -> None:
    seen: list[FillProgress] = []
    cache = await make_cache(on_progress=seen.append)
    data = payload(MIB)
    await _fill(cache, REG, sha256(data), Upstream(data, delay=0.04, chunk=64 * 1024))
    assert seen[0].done == 0 and seen[0].total == len(data)
    assert seen[-1].finished and seen[-1].done == len(data) and seen[-1].error is None
    assert any(0 < p.done < len(data) for p in seen)


async def test_hits_survive_a_restart(make_cache: CacheFactory, tmp_path: Path) -> None:
    cache = await make_cache()
    data = payload(70_000)
    await _fill(cache, REG, sha256(data), Upstream(data))
    await cache.close()
    again = await make_cache()
    hit = await again.open(REG, sha256(data))
    assert hit is not None and await read_all(hit.chunks()) == data
    await hit.close()


async def test_entry_whose_file_vanished_is_dropped_and_refilled(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    cache = await make_cache()
    data = payload(1000)
    await _fill(cache, REG, sha256(data), Upstream(data))
    path = cache.store.local_path(BlobKey.of(REG, Kind.BLOB, sha256(data)))
    assert path is not None
    path.unlink()
    assert await cache.open(REG, sha256(data)) is None
    assert (await cache.usage()).entries == 0
    up = Upstream(data)
    await _fill(cache, REG, sha256(data), up)
    assert up.fetches == 1


async def test_start_finishes_rows_a_crash_left_unfinished(make_cache: CacheFactory, tmp_path: Path) -> None:
    cache = await make_cache()
    renamed, not_renamed, deleting = payload(100, 1), payload(100, 2), payload(100, 3)
    for data in (renamed, deleting):
        await _fill(cache, REG, sha256(data), Upstream(data))
    await cache.close()
    db = sqlite3.connect(tmp_path / "cache" / INDEX_FILE)
    db.execute("UPDATE blobs SET state = 'pending' WHERE digest = ?", (sha256(renamed),))
    db.execute("UPDATE blobs SET state = 'deleting' WHERE digest = ?", (sha256(deleting),))
    db.execute(
        "INSERT INTO blobs VALUES (?, 'blob', ?, 100, NULL, 0, 0, 0, 'pending')", (REG, sha256(not_renamed))
    )
    db.commit()
    db.close()
    (tmp_path / "cache" / "tmp" / "leftover.part").write_bytes(b"partial")

    again = await make_cache()
    assert again.swept == 1
    assert tmp_files(tmp_path / "cache") == []
    hit = await again.open(REG, sha256(renamed))
    assert hit is not None
    await hit.close()
    assert await again.open(REG, sha256(not_renamed)) is None
    assert await again.open(REG, sha256(deleting)) is None
    assert not again.store.local_path(BlobKey.of(REG, Kind.BLOB, sha256(deleting))).exists()  # type: ignore[union-attr]
    assert (await again.verify()).consistent


async def test_start_with_100k_entries_serves_the_first_hit_within_a_second(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    seed = BlobCache.on_disk(directory, CacheConfig(max_size=1 << 50, inactive=1e9, min_free_disk=0))
    await seed.start()
    data = payload(4096)
    await _fill(seed, REG, sha256(data), Upstream(data))
    await seed.close()
    db = sqlite3.connect(directory / INDEX_FILE)
    now = time.time()
    db.executemany(
        "INSERT INTO blobs VALUES (?, 'blob', ?, 1000, NULL, ?, ?, 0, 'ready')",
        ((REG, sha256(i.to_bytes(4, "big")), now, now) for i in range(100_000)),
    )
    db.commit()
    db.close()

    started = time.monotonic()
    cache = BlobCache.on_disk(directory, CacheConfig(max_size=1 << 50, inactive=1e9, min_free_disk=0))
    await cache.start()
    hit = await cache.open(REG, sha256(data))
    assert hit is not None and await read_all(hit.chunks()) == data
    elapsed = time.monotonic() - started
    await hit.close()
    assert (await cache.usage()).entries == 100_001
    await cache.close()
    assert elapsed < 1.0


async def test_purge_by_repository_keeps_blobs_other_repositories_use(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    shared, own = payload(100, 1), payload(100, 2)
    await _fill(cache, REG, sha256(shared), Upstream(shared), repository="a")
    await _fill(cache, REG, sha256(shared), Upstream(shared), repository="b")  # a hit that adds a ref
    await _fill(cache, REG, sha256(own), Upstream(own), repository="a")
    assert await cache.purge(registry=REG, repository="a") == 1
    assert await cache.open(REG, sha256(own)) is None
    hit = await cache.open(REG, sha256(shared))
    assert hit is not None
    await hit.close()
    assert await cache.purge(registry=REG) == 1
    assert (await cache.usage()).entries == 0


async def test_list_images_reports_sizes_and_last_use(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(1234)
    await _fill(cache, REG, sha256(data), Upstream(data))
    [listing] = await cache.list_images()
    assert (listing.registry, listing.repository, listing.size) == (REG, REPO, 1234)
    assert listing.blobs[0].digest == sha256(data) and listing.blobs[0].last_access > 0


async def _settle(cache: BlobCache) -> None:
    await asyncio.wait_for(cache.wait_fills(), timeout=10)
    assert cache.inflight() == []


async def _fill(cache: BlobCache, registry: str, digest: str, up: Upstream, repository: str = REPO) -> None:
    reader = await cache.open_or_fill(registry, repository, digest, up.fetch)
    assert await read_all(reader.chunks()) == up.data
    await reader.close()
    await _settle(cache)


async def test_on_miss_runs_when_a_fill_starts_before_the_upstream_answers(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(1000, 41)
    answered = asyncio.Event()
    up = Upstream(data)

    async def slow_fetch() -> BlobSource:
        await answered.wait()  # a distant upstream: its answer is a round trip away
        return await up.fetch()

    calls: list[str] = []
    opening = asyncio.ensure_future(
        cache.open_or_fill(REG, REPO, sha256(data), slow_fetch, on_miss=lambda: calls.append("starter"))
    )
    await _until(lambda: calls != [])
    assert calls == ["starter"] and not opening.done()  # called while the upstream is still silent
    joining = asyncio.ensure_future(
        cache.open_or_fill(REG, REPO, sha256(data), slow_fetch, on_miss=lambda: calls.append("joiner"))
    )
    answered.set()
    first, second = await opening, await joining
    assert (first.status, second.status) == (CacheStatus.MISS, CacheStatus.COALESCED)
    for reader in (first, second):
        assert await read_all(reader.chunks()) == data
        await reader.close()
    await cache.wait_fills()
    hit = await cache.open_or_fill(REG, REPO, sha256(data), slow_fetch, on_miss=lambda: calls.append("hit"))
    assert hit.status is CacheStatus.HIT
    await hit.close()
    assert calls == ["starter"]  # neither a request that joins a fill nor a hit calls it
