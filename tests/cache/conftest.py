"""Fixtures for the cache tests: real caches in tmp dirs, closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from appliance.cache import BlobCache
from appliance.config.model import CacheConfig

CacheFactory = Callable[..., Awaitable[BlobCache]]


@pytest.fixture
async def make_cache(tmp_path: Path) -> AsyncIterator[CacheFactory]:
    caches: list[BlobCache] = []

    async def make(
        max_size: int = 1 << 40,
        inactive: float = 86400.0,
        min_free_disk: int = 0,
        directory: Path | None = None,
        **kwargs: object,
    ) -> BlobCache:
        cache = BlobCache.on_disk(
            directory or tmp_path / "cache",
            CacheConfig(max_size=max_size, inactive=inactive, min_free_disk=min_free_disk),
            **kwargs,  # type: ignore[arg-type]
        )
        await cache.start()
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        await cache.close()
