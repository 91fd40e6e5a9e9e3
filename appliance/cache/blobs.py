"""``BlobCache``: the facade the registry API calls for blobs (hit, join a fill, start a fill, bypass)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from appliance.cache.blobstore import BlobKey, BlobStore, Kind
from appliance.cache.eviction import Evictor, Leases
from appliance.cache.filestore import FileBlobStore
from appliance.cache.fill import FetchBlob, Fill, FillMode, FillProgress
from appliance.cache.fills import FillManager
from appliance.cache.index import CacheIndex
from appliance.cache.index_records import Entry, EntryState, RegistryUsage, RepositoryListing
from appliance.cache.readers import BlobReader, BypassReader, FollowReader, HitReader
from appliance.cache.storage_health import StorageHealth, StorageReport
from appliance.cache.tiers import Confirm, SharedTier
from appliance.cache.verify import VerifyReport, verify
from appliance.config.model import CacheConfig
from appliance.events import CacheStatus

if TYPE_CHECKING:
    # typing.Unpack is 3.12+; the stub is all mypy needs, nothing imports it at run time.
    from typing_extensions import Unpack

log = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite"


@dataclass(frozen=True, slots=True)
class CacheUsage:
    bytes: int  # committed bytes on disk
    entries: int
    cap: int
    filling: int  # bytes reserved by fills in progress (they count against the cap)
    registries: tuple[RegistryUsage, ...]
    evicted: int  # entries evicted or expired since start
    storage: StorageReport | None = None  # the disk's state: room, failed writes (storage_health)


class CacheHooks(TypedDict, total=False):
    """What a ``BlobCache`` takes besides its settings: observers and the clock (tests set these)."""

    on_progress: Callable[[FillProgress], None] | None
    housekeeping_interval: float
    clock: Callable[[], float]


class BlobCache:
    """Blobs by (registry, digest), filled once from upstream and streamed to every waiting client."""

    def __init__(
        self,
        store: BlobStore,
        index: CacheIndex,
        config: CacheConfig,
        *,
        on_progress: Callable[[FillProgress], None] | None = None,
        housekeeping_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.index = index
        self.leases = Leases()
        self._clock = clock
        # Shared by the index (dropped use records), the fills and the manifests: one disk state.
        self.health = StorageHealth(config.min_free_disk, clock=clock)
        index.health = self.health
        self.evictor = Evictor(
            index, store, self.leases, max_size=config.max_size, inactive=config.inactive, clock=clock
        )
        self.fills = FillManager(
            store,
            index,
            self.evictor,
            self.leases,
            min_free_disk=config.min_free_disk,
            on_progress=on_progress,
            clock=clock,
            health=self.health,
        )
        self._housekeeping_interval = housekeeping_interval
        self._housekeeping: asyncio.Task[None] | None = None
        # A tier below the disk (the fleet's bucket) that new fills get their bytes from; the engine
        # sets it before start (tiers.py).
        self.tier: SharedTier | None = None
        self.swept = 0  # temp files of interrupted fills removed at start

    @classmethod
    def on_disk(cls, cache_dir: Path, config: CacheConfig, **hooks: Unpack[CacheHooks]) -> BlobCache:
        """The usual composition: files and index side by side in ``cache_dir``."""
        return cls(FileBlobStore(cache_dir), CacheIndex(cache_dir / INDEX_FILE), config, **hooks)

    async def start(self) -> None:
        """Sweep temp files, finish what a crash interrupted, load the byte count, start housekeeping."""
        self.swept = await self.store.start()
        await self.index.open()
        if self.index.created_fresh and await self._store_has_data():
            log.warning(
                "cache index %s was missing but the store holds data: run `appliance cache verify"
                " --repair` to adopt it (until then those blobs are fetched again)",
                self.index.path,
            )
        await self._recover()
        await self.evictor.load()
        self._housekeeping = asyncio.create_task(
            self.evictor.run(self._housekeeping_interval), name="cache-housekeeping"
        )

    async def _store_has_data(self) -> bool:
        async with contextlib.aclosing(self.store.scan()) as objects:  # type: ignore[type-var]
            async for _obj in objects:
                return True
        return False

    async def _recover(self) -> None:
        for entry in await self.index.unfinished():
            try:
                if entry.state is EntryState.PENDING and await self.store.exists(entry.key):
                    await self.index.mark_ready_keys([entry.key])
                else:
                    await self.store.delete(entry.key)
                    await self.index.remove([entry.key])
            except (OSError, sqlite3.Error) as exc:
                # A full disk must not keep the engine from starting: the row stays unfinished
                # (never served), and the next start or `cache verify --repair` finishes it.
                self.health.failed(f"cache recovery of {entry.key.digest}", exc)
                log.warning("cache recovery of %s left for later: %s", entry.key.digest, exc)

    async def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        await self.fills.close()
        await self.index.close()
        await self.store.close()

    async def open(self, registry: str, digest: str) -> BlobReader | None:
        """A committed entry (HIT), or None.  Touches its last access; the reader holds a lease."""
        key = BlobKey.of(registry, Kind.BLOB, digest)
        reader = await self._open_key(key)
        return reader

    async def _open_key(self, key: BlobKey) -> HitReader | None:
        self.leases.acquire(key)
        try:
            entry = await self.index.get(key)
            obj = None if entry is None else await self.store.open(key)
            if entry is None or obj is None or obj.size != entry.size:
                if obj is not None:
                    await obj.close()
                if entry is not None:
                    # The file vanished or changed behind our back: forget the entry, refill it.
                    log.warning("cache entry %s %s lost its file; dropping it", key.registry, key.digest)
                    await self.drop_lost(entry)
                self.leases.release(key)
                return None
            self.index.touch_soon(key, self._clock())
        except BaseException:
            self.leases.release(key)
            raise
        return HitReader(obj, lambda: self.leases.release(key), key.registry)

    async def drop_lost(self, entry: Entry) -> None:
        """Forget an entry whose file is gone; on a full disk that may fail, and the caller misses."""
        try:
            await self.evictor.delete([entry], force=True)
        except (OSError, sqlite3.Error) as exc:  # a full disk: the request goes on as a miss anyway
            self.health.failed(f"dropping the lost entry {entry.key.digest}", exc)

    async def open_or_fill(
        self,
        registry: str,
        repository: str,
        digest: str,
        fetch: FetchBlob,
        *,
        expected_size: int | None = None,
        on_miss: Callable[[], object] | None = None,
        confirm: Callable[[], Awaitable[None]] | None = None,
    ) -> BlobReader:
        """HIT, or join the fill in flight (COALESCED), or start one (MISS), or pass through (BYPASS).

        If ``fetch()`` raises before the first byte, every waiter gets that error.  ``on_miss`` is
        called as soon as this request starts a fill, before the upstream has answered.
        ``confirm`` (for a repository not yet linked to the blob) must succeed before bytes that
        another request fetched are served: a hit or a fill in flight; a fill this call starts is
        its own check, so a cold miss costs no extra upstream request.
        """
        key = BlobKey.of(registry, Kind.BLOB, digest)
        hit = await self._open_key(key)
        if hit is not None:
            if confirm is not None:
                try:
                    await confirm()
                except BaseException:
                    await hit.close()
                    raise
            self.index.add_ref_soon(registry, repository, str(key.digest))
            return hit
        if confirm is not None and self.fills.get(key) is not None:
            await confirm()
            # The fill may have finished meanwhile: look again, now as a repository the upstream vouched for.
            return await self.open_or_fill(
                registry, repository, digest, fetch, expected_size=expected_size, on_miss=on_miss
            )
        # No await between the look above and the fill's start in _join_or_start: a fill another
        # request starts cannot slip in between and be joined unchecked.
        fill, starter, mode = await self._join_or_start(
            key, repository, fetch, expected_size, on_miss, confirm=confirm
        )
        if mode is FillMode.BYPASS or (fill.passthrough and not starter):
            source = fill.bypass_source if starter else None
            if source is None:
                # The fill that was joined does not store (or lost its storage and holds only what
                # its own readers still need): this request fetches on its own.
                source = await fetch()
            return BypassReader(source, key.digest, registry)
        self.leases.acquire(key)
        return FollowReader(
            fill, CacheStatus.MISS if starter else CacheStatus.COALESCED, lambda: self.leases.release(key)
        )

    async def warm(
        self,
        registry: str,
        repository: str,
        digest: str,
        fetch: FetchBlob,
        *,
        expected_size: int | None = None,
    ) -> int:
        """Have the blob cached without reading it: the bytes this call fetched and stored (or 0).

        A HIT costs nothing; a fill in flight is waited for; otherwise a fill starts and is waited
        for.  When the cache would not store the blob (BYPASS) nothing is downloaded.  A fetch
        that fails raises, as it would for a reader.
        """
        key = BlobKey.of(registry, Kind.BLOB, digest)
        hit = await self._open_key(key)
        if hit is not None:
            await hit.close()
            return 0
        fill, starter, mode = await self._join_or_start(key, repository, fetch, expected_size)
        if mode is FillMode.BYPASS:
            if starter and fill.bypass_source is not None:
                await fill.bypass_source.close()  # handed to us: nobody will read it
            return 0
        while not fill.finished:  # checked and waited on with no await between: no wake-up is lost
            await fill.changed.wait()
        if fill.error is not None and not fill.committed:
            raise fill.error
        return fill.written if starter and fill.committed else 0

    async def _join_or_start(
        self,
        key: BlobKey,
        repository: str,
        fetch: FetchBlob,
        expected_size: int | None,
        on_start: Callable[[], object] | None = None,
        *,
        confirm: Confirm | None = None,
    ) -> tuple[Fill, bool, FillMode]:
        """The fill in flight for ``key`` or a new one, once it knows whether it stores (``ready``).

        Also says whether this call started it: a starter that goes away while waiting leaves the
        fill to run on, but closes an upstream body handed over for a BYPASS that nobody will read.
        """
        fill = self.fills.get(key)
        starter = fill is None
        if fill is None:
            if self.tier is not None:
                fetch = self.tier.source(key, repository, fetch, confirm)
            fill = self.fills.start(key, repository, fetch, expected_size)
            if on_start is not None:
                on_start()
        else:
            fill.add_repository(repository)
        try:
            mode = await asyncio.shield(fill.ready)
        except asyncio.CancelledError:
            if starter:
                fill.starter_gone = True
                if fill.bypass_source is not None:
                    await fill.bypass_source.close()
            raise
        return fill, starter, mode

    def now(self) -> float:
        return self._clock()

    def inflight(self) -> list[FillProgress]:
        return self.fills.inflight()

    async def wait_fills(self) -> None:
        """Wait for the fills in flight to finish (prefetch, orderly shutdown, tests)."""
        await self.fills.wait_idle()

    async def usage(self) -> CacheUsage:
        totals = await self.index.totals()
        # Fresh for status views (they are asked for seldom); room seen clears a "full" disk.
        await self.fills.look_at_disk()
        return CacheUsage(
            bytes=totals.bytes,
            entries=totals.entries,
            cap=self.evictor.max_size,
            filling=self.evictor.reserved,
            registries=totals.registries,
            evicted=self.evictor.evicted,
            storage=self.health.report(),
        )

    async def storage(self) -> StorageReport:
        """The disk's state with a fresh look at its free space (``appliance status``)."""
        await self.fills.look_at_disk()
        return self.health.report()

    async def purge(
        self, *, registry: str | None = None, repository: str | None = None, digest: str | None = None
    ) -> int:
        """Forget entries (blobs and manifests) and tag records; returns how many entries went.

        With a repository, blobs still referenced by another repository stay.  Entries being read
        are removed too: open readers keep their file handle until they finish.
        """
        victims = await self.index.select_purge(registry, repository, digest)
        return await self.evictor.delete(victims, force=True)

    async def pin(self, registry: str, repository: str, pinned: bool) -> int:
        """Pin (or unpin) every entry of a repository, including ones fetched later."""
        return await self.index.pin(registry, repository, pinned)

    async def list_images(self, registry: str | None = None) -> list[RepositoryListing]:
        """Repositories with their tags and entries (sizes, last use), for ``appliance cache ls``."""
        return await self.index.list_repositories(registry)

    async def verify(self, *, repair: bool = False) -> VerifyReport:
        """Re-hash every file and compare with the index; with ``repair``, fix what is wrong."""
        report = await verify(self.store, self.index, repair=repair, busy=self.leases.__contains__)
        await self.evictor.load()
        return report
