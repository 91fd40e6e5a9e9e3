"""FillManager: one task per key, owned by the manager, progress, and shutdown."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from appliance.cache import BlobCache, BlobKey, BlobSource, Kind
from appliance.cache import fills as fills_module
from appliance.cache.blobstore import TempBlob
from appliance.cache.filestore import FileBlobStore
from appliance.cache.fill import FillMode
from appliance.cache.index import CacheIndex
from appliance.config.model import CacheConfig
from appliance.errors import UpstreamError
from appliance.events import CacheStatus
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256


async def test_a_second_start_for_the_same_key_is_refused(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(1000)
    key = BlobKey.of(REG, Kind.BLOB, sha256(data))
    gate = asyncio.Event()
    up = Upstream(data, gate=gate)
    fill = cache.fills.start(key, REPO, up.fetch, None)
    with pytest.raises(RuntimeError, match="already running"):
        cache.fills.start(key, REPO, up.fetch, None)
    assert cache.fills.get(key) is fill
    assert await fill.ready is FillMode.STORE
    gate.set()
    await cache.wait_fills()
    assert fill.committed and fill.finished and up.fetches == 1
    assert cache.fills.get(key) is None


async def test_inflight_reports_bytes_total_and_readers(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(300_000)
    gate = asyncio.Event()
    up = Upstream(data, chunk=100_000, gate=gate)
    readers = [await cache.open_or_fill(REG, REPO, sha256(data), up.fetch) for _ in range(2)]
    await up.first_sent.wait()
    # The first chunk is sent; the fill reports it once it is on disk.
    deadline = time.monotonic() + 5
    while cache.inflight()[0].done < 100_000:
        assert time.monotonic() < deadline, cache.inflight()
        await asyncio.sleep(0.001)
    [progress] = cache.inflight()
    assert (progress.registry, progress.repository, progress.digest) == (REG, REPO, sha256(data))
    assert (progress.done, progress.total, progress.readers) == (100_000, 300_000, 2)
    assert progress.rate > 0
    gate.set()
    for reader in readers:
        assert await read_all(reader.chunks()) == data
        await reader.close()


async def test_close_cancels_fills_fails_their_readers_and_removes_temp_files(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    cache = await make_cache()
    data = payload(300_000)
    up = Upstream(data, chunk=100_000, gate=asyncio.Event())
    reader = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    await up.first_sent.wait()
    assert len(os.listdir(tmp_path / "cache" / "tmp")) == 1
    await cache.fills.close()
    with pytest.raises(UpstreamError, match="shutting down"):
        await read_all(reader.chunks())
    await reader.close()
    assert os.listdir(tmp_path / "cache" / "tmp") == []
    assert up.closed == 1
    assert (await cache.usage()).filling == 0


@pytest.mark.parametrize("announced", [True, False], ids=["size-known", "size-unknown"])
async def test_the_last_chunk_counts_even_when_its_write_finished_before_the_fill_looked(
    make_cache: CacheFactory, announced: bool
) -> None:
    # The body ends a few loop turns after the last chunk's disk write and hash have finished on
    # their threads, so the fill finds that write already done.  Each turn count shifts where the
    # fill's check lands relative to the write's completion callbacks; one of them used to land
    # before the byte count was updated (a cut-off error, or a short size for an unknown length).
    for turns in range(10):
        cache = await make_cache()
        data = payload(200_000, turns)

        async def body(
            data: bytes = data, turns: int = turns, cache: BlobCache = cache
        ) -> AsyncIterator[bytes]:
            for offset in range(0, len(data), 65536):
                yield data[offset : offset + 65536]
            await asyncio.sleep(0)  # the write and hash tasks start and hand their work to threads
            _write_threads_drained(cache)  # blocks the loop on purpose, until those threads are done
            for _ in range(turns):
                await asyncio.sleep(0)

        async def fetch(data: bytes = data, body: Callable[[], AsyncIterator[bytes]] = body) -> BlobSource:
            async def close() -> None:
                pass

            return BlobSource(len(data) if announced else None, body(), close)

        reader = await cache.open_or_fill(REG, REPO, sha256(data), fetch)
        assert await read_all(reader.chunks()) == data, f"after {turns} turns"
        await reader.close()
        await cache.wait_fills()
        hit = await cache.open(REG, sha256(data))
        assert hit is not None, f"after {turns} turns"
        assert await read_all(hit.chunks()) == data, f"after {turns} turns"
        await hit.close()
        await cache.close()


def _write_threads_drained(cache: BlobCache) -> None:
    """Block until every job queued on the store's write threads before now has finished.

    One barrier job per write thread: the queue is first in, first out, so all of them can only be
    running at once after every earlier job has been taken and finished.
    """
    store = cache.store
    assert isinstance(store, FileBlobStore)
    pool = store._files.write_pool
    barrier = threading.Barrier(pool._max_workers + 1)
    for _ in range(pool._max_workers):
        pool.submit(barrier.wait, 5)
    barrier.wait(5)


class _HeldWrites(TempBlob):
    """A real temp file whose writes after the first wait for ``release``: a slow disk."""

    def __init__(self, inner: TempBlob, release: asyncio.Event) -> None:
        self._inner = inner
        self._release = release
        self._writes = 0

    async def write(self, data: bytes, also: Callable[[bytes], object] | None = None) -> None:
        self._writes += 1
        if self._writes > 1:
            await self._release.wait()
        await self._inner.write(data, also)

    async def read_at(self, offset: int, length: int) -> bytes:
        return await self._inner.read_at(offset, length)

    async def commit(self) -> None:
        await self._inner.commit()

    async def discard(self) -> None:
        await self._inner.discard()

    async def release(self) -> None:
        await self._inner.release()


async def test_a_reader_keeping_pace_gets_bytes_before_a_slow_disk_has_them(tmp_path: Path) -> None:
    release = asyncio.Event()

    class SlowDisk(FileBlobStore):
        async def create_temp(self, key: BlobKey) -> TempBlob:
            return _HeldWrites(await super().create_temp(key), release)

    cache = BlobCache(
        SlowDisk(tmp_path / "cache"),
        CacheIndex(tmp_path / "cache" / "index.sqlite"),
        CacheConfig(max_size=1 << 30, inactive=86400.0, min_free_disk=0),
    )
    await cache.start()
    try:
        data = payload(3 * 65536, 7)
        reader = await cache.open_or_fill(REG, REPO, sha256(data), Upstream(data).fetch)
        chunks = reader.chunks()
        # The second chunk's write is held, yet the client gets it: it comes from memory.
        first = await asyncio.wait_for(anext(chunks), 5)
        got = first
        while len(got) < 2 * 65536:
            got += await asyncio.wait_for(anext(chunks), 5)
        assert got == data[: len(got)]
        fill = cache.fills.get(BlobKey.of(REG, Kind.BLOB, sha256(data)))
        assert fill is not None and fill.written <= 65536  # the disk has at most the first chunk
        release.set()
        got += await read_all(chunks)
        assert got == data
        await reader.close()
        await cache.wait_fills()
        hit = await cache.open(REG, sha256(data))
        assert hit is not None
        assert await read_all(hit.chunks()) == data
        await hit.close()
    finally:
        await cache.close()


async def test_only_the_first_fill_waits_for_the_free_space_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = asyncio.Event()
    asked = 0
    free = 1 << 40

    class SlowStatfs(FileBlobStore):
        async def free_space(self) -> int | None:
            nonlocal asked
            asked += 1
            if asked > 1:
                await answer.wait()
            return free

    cache = BlobCache(
        SlowStatfs(tmp_path / "cache"),
        CacheIndex(tmp_path / "cache" / "index.sqlite"),
        CacheConfig(max_size=1 << 30, inactive=86400.0, min_free_disk=1 << 30),
    )
    await cache.start()
    monkeypatch.setattr(fills_module, "_FREE_SPACE_TTL", 0.0)  # every answer is stale at once
    try:
        first = payload(1000, 1)
        reader = await cache.open_or_fill(REG, REPO, sha256(first), Upstream(first).fetch)
        assert reader.status is CacheStatus.MISS and asked == 1
        await reader.close()
        # The last answer is stale: a new one is asked for, and not waited on.
        second = payload(1000, 2)
        reader = await asyncio.wait_for(
            cache.open_or_fill(REG, REPO, sha256(second), Upstream(second).fetch), 5
        )
        assert reader.status is CacheStatus.MISS and asked == 2
        assert await read_all(reader.chunks()) == second
        await reader.close()
        free = 0  # the disk filled up meanwhile: once the answer comes, new blobs pass through
        answer.set()
        await cache.wait_fills()
        third = payload(1000, 3)
        reader = await cache.open_or_fill(REG, REPO, sha256(third), Upstream(third).fetch)
        assert reader.status is CacheStatus.BYPASS
        await reader.close()
    finally:
        await cache.close()
