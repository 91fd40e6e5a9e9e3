"""Readers: ranges on committed files, pass-through reads, holding the last bytes until the verdict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.cache import BlobKey, BlobSource, FileBlobStore, Kind
from appliance.cache.readers import BypassReader, HitReader
from appliance.digests import parse_digest
from appliance.errors import IntegrityError
from appliance.events import CacheStatus
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256


async def test_hit_reader_serves_ranges_and_releases_its_lease_once(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    await store.start()
    data = payload(600_000)
    key = BlobKey.of(REG, Kind.BLOB, sha256(data))
    await store.put_small(key, data)
    obj = await store.open(key)
    assert obj is not None
    released: list[int] = []
    reader = HitReader(obj, lambda: released.append(1), REG)
    assert (reader.status, reader.size, reader.path) == (CacheStatus.HIT, len(data), store.local_path(key))
    assert await read_all(reader.chunks()) == data
    assert await read_all(reader.chunks(599_990)) == data[599_990:]
    assert await read_all(reader.chunks(10, 300_000)) == data[10:300_000]
    assert await read_all(reader.chunks(0, 10**9)) == data
    with pytest.raises(ValueError, match="invalid range"):
        await read_all(reader.chunks(5, 4))
    await reader.close()
    await reader.close()
    assert released == [1]
    await store.close()


async def test_bypass_reader_slices_a_range_and_reads_only_once() -> None:
    data = payload(300_000)
    up = Upstream(data, chunk=70_000)
    reader = BypassReader(await up.fetch(), parse_digest(sha256(data)), REG)
    assert await read_all(reader.chunks(69_990, 140_010)) == data[69_990:140_010]
    with pytest.raises(ValueError, match="only once"):
        await read_all(reader.chunks())
    await reader.close()
    await reader.close()
    assert up.closed == 1


async def test_bypass_reader_reports_a_short_body() -> None:
    data = payload(1000)
    reader = BypassReader(await Upstream(data, size=1200).fetch(), parse_digest(sha256(data)), REG)
    with pytest.raises(IntegrityError, match="got 1000 of 1200"):
        await read_all(reader.chunks())


async def test_follow_reader_holds_the_last_bytes_until_the_fill_is_verified(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache()
    data = payload(100_000)
    verdict = asyncio.Event()
    up = Upstream(data, chunk=100_000)
    real = up.fetch

    async def fetch() -> BlobSource:
        source = await real()

        async def body() -> AsyncIterator[bytes]:
            async for chunk in source.chunks:
                yield chunk
            await verdict.wait()  # the body is all there, but the upstream has not ended yet

        return BlobSource(source.size, body(), source.close)

    reader = await cache.open_or_fill(REG, REPO, sha256(data), fetch)
    it = reader.chunks()
    pending: asyncio.Future[bytes] = asyncio.ensure_future(anext(it))
    await asyncio.sleep(0.05)
    assert not pending.done()  # every byte is on disk, yet nothing is released before the verdict
    verdict.set()
    assert await pending == data
    await reader.close()
