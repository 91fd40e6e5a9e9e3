"""BlobCache.warm: have a blob cached without reading it (what pull-ahead uses)."""

from __future__ import annotations

import asyncio

import pytest

from appliance.errors import UpstreamError
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256


async def test_warm_fetches_and_stores_a_missing_blob_once_and_says_how_many_bytes(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache()
    data = payload(300_000, 1)
    up = Upstream(data)
    assert await cache.warm(REG, REPO, sha256(data), up.fetch, expected_size=len(data)) == len(data)
    assert up.fetches == 1
    hit = await cache.open(REG, sha256(data))
    assert hit is not None
    assert await read_all(hit.chunks()) == data
    await hit.close()
    # Cached now: a second warm costs nothing upstream.
    assert await cache.warm(REG, REPO, sha256(data), up.fetch) == 0
    assert up.fetches == 1


async def test_warm_joins_a_fill_in_flight_instead_of_fetching_again(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(200_000, 2)
    gate = asyncio.Event()
    up = Upstream(data, gate=gate)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    warming = asyncio.create_task(cache.warm(REG, REPO, sha256(data), up.fetch))
    await asyncio.sleep(0.05)
    assert not warming.done()  # it waits for the fill to finish
    gate.set()
    assert await read_all(reader.chunks()) == data
    await reader.close()
    assert await asyncio.wait_for(warming, 5) == 0  # stored, but by the client's fill
    assert up.fetches == 1


async def test_warm_downloads_nothing_when_the_cache_would_not_store_the_blob(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache(max_size=100_000)
    data = payload(300_000, 3)
    up = Upstream(data)
    assert await cache.warm(REG, REPO, sha256(data), up.fetch, expected_size=len(data)) == 0
    assert up.fetches == 1 and up.sent == 0  # the answer's headers were seen, its body never read
    assert up.closed == 1
    assert await cache.open(REG, sha256(data)) is None


async def test_warm_raises_the_fetch_error_and_leaves_nothing_behind(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(1000, 4)
    down = Upstream(data, fail_before=UpstreamError(REG, "connection refused"))
    with pytest.raises(UpstreamError, match="connection refused"):
        await cache.warm(REG, REPO, sha256(data), down.fetch)
    assert cache.inflight() == []
    assert await cache.open(REG, sha256(data)) is None


async def test_warm_raises_when_the_upstream_sends_wrong_bytes(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    data = payload(100_000, 5)
    liar = Upstream(payload(100_000, 6))
    with pytest.raises(UpstreamError, match="hashing to"):
        await cache.warm(REG, REPO, sha256(data), liar.fetch)
    assert await cache.open(REG, sha256(data)) is None
