"""FillManager: one task per key, owned by the manager, progress, and shutdown."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from appliance.cache import BlobKey, Kind
from appliance.cache.fills import FillMode
from appliance.errors import UpstreamError
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
    await asyncio.sleep(0.02)
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
