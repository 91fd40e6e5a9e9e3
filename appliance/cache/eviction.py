"""Space accounting, LRU eviction under a hard cap, and expiry of entries nobody touched.

The cap counts committed bytes plus bytes *reserved* by fills in progress, so a fill is admitted
only when its whole size fits (or, size unknown, as it grows).  Eviction never removes an entry that
holds a lease (being read or filled) nor a pinned one; when nothing evictable is left the caller is
told no and serves the request without storing it (BYPASS).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable

from appliance.cache.blobstore import BlobKey, BlobStore
from appliance.cache.index import CacheIndex
from appliance.cache.index_records import Entry

log = logging.getLogger(__name__)

_BATCH = 64


class Leases:
    """In-memory use counts of keys that must not be evicted right now."""

    def __init__(self) -> None:
        self._counts: collections.Counter[BlobKey] = collections.Counter()

    def acquire(self, key: BlobKey) -> None:
        self._counts[key] += 1

    def release(self, key: BlobKey) -> None:
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]

    def __contains__(self, key: object) -> bool:
        return key in self._counts

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, key: BlobKey) -> int:
        return self._counts.get(key, 0)


class Evictor:
    """Owns the byte counts of the cache and makes room by deleting least-recently-used entries."""

    def __init__(
        self,
        index: CacheIndex,
        store: BlobStore,
        leases: Leases,
        *,
        max_size: int,
        inactive: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        self._store = store
        self._leases = leases
        self.max_size = max_size
        self.inactive = inactive
        self._clock = clock
        self.committed = 0
        self.reserved = 0
        self.evicted = 0  # entries removed for space or age since start
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        self.committed = (await self._index.totals()).bytes

    @property
    def used(self) -> int:
        return self.committed + self.reserved

    async def reserve(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` under the cap, evicting LRU entries if needed; False if it cannot fit."""
        if nbytes > self.max_size:
            return False
        async with self._lock:
            while self.used + nbytes > self.max_size:
                if not await self._evict_some(self.used + nbytes - self.max_size):
                    return False
            self.reserved += nbytes
            return True

    def release(self, nbytes: int) -> None:
        self.reserved -= nbytes

    def committed_from_reservation(self, reserved: int, size: int) -> None:
        self.reserved -= reserved
        self.committed += size

    async def _evict_some(self, needed: int) -> bool:
        candidates = await self._index.lru(len(self._leases) + _BATCH)
        chosen: list[Entry] = []
        freed = 0
        for entry in candidates:
            if entry.key in self._leases:
                continue
            chosen.append(entry)
            freed += entry.size
            if freed >= needed:
                break
        if not chosen:
            return False
        return await self.delete(chosen) > 0

    async def delete(self, entries: Iterable[Entry], *, force: bool = False) -> int:
        """Delete entries (crash-safe order: mark, unlink, forget).  Leased ones are kept unless forced.

        Returns how many were deleted.
        """
        victims = [e for e in entries if force or e.key not in self._leases]
        if not victims:
            return 0
        await self._index.mark_deleting(e.key for e in victims)
        if not force:
            # A reader may have taken a lease while the rows were being marked; it keeps its entry.
            kept = [e for e in victims if e.key in self._leases]
            if kept:
                await self._index.mark_ready_keys(e.key for e in kept)
                victims = [e for e in victims if e.key not in self._leases]
        for entry in victims:
            await self._store.delete(entry.key)
        await self._index.remove(e.key for e in victims)
        self.committed -= sum(e.size for e in victims)
        self.evicted += len(victims)
        return len(victims)

    async def expire(self) -> int:
        """Remove unpinned entries not accessed for ``inactive`` seconds."""
        cutoff = self._clock() - self.inactive
        removed = 0
        async with self._lock:
            while True:
                batch = [e for e in await self._index.lru(len(self._leases) + _BATCH, older_than=cutoff)]
                batch = [e for e in batch if e.key not in self._leases]
                if not batch:
                    return removed
                removed += await self.delete(batch)

    async def enforce_cap(self) -> int:
        """Evict until under the cap (after the cap was lowered, or entries were adopted)."""
        removed = 0
        async with self._lock:
            while self.used > self.max_size:
                before = self.evicted
                if not await self._evict_some(self.used - self.max_size):
                    break
                removed += self.evicted - before
        return removed

    async def run(self, interval: float) -> None:
        """The periodic housekeeping task: expiry, then the cap."""
        while True:
            await asyncio.sleep(interval)
            try:
                expired = await self.expire()
                over = await self.enforce_cap()
            except (OSError, sqlite3.Error) as exc:
                log.warning("cache housekeeping failed: %s", exc)
                continue
            if expired or over:
                log.info("cache housekeeping: %d expired, %d evicted over the cap", expired, over)
