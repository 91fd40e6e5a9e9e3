"""Single-flight, streaming fills: one upstream fetch per (registry, digest), any number of readers.

A fill runs in a task owned by ``FillManager``, not by the request that started it, so it finishes
(and the next pull is a hit) even when that client goes away.  Bytes go to a temp object while the
digest and length are checked; readers follow the fill as it grows, each at its own pace (from the
last chunks held in memory when they keep up, from the temp object when they lag), woken by a
per-fill ``asyncio.Event`` that is replaced on every change.  Only verified bytes are
committed; on any failure every reader gets the same error and nothing is left behind.

Local storage failing (a full disk) is not the readers' problem: a fill that cannot create its temp
object is served as a BYPASS, one whose write fails goes on as a pass-through (fill.py: its readers
get every byte, the temp object goes, nothing is committed), and one whose commit fails has already
served verified bytes.  Each is counted in ``StorageHealth``, and no fill starts while it says full.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable

from appliance.cache.blobstore import BlobKey, BlobStore, TempBlob
from appliance.cache.eviction import Evictor, Leases
from appliance.cache.fill import PASSTHROUGH_HELD, BlobSource, FetchBlob, Fill, FillMode, FillProgress
from appliance.cache.index import CacheIndex
from appliance.cache.storage_health import StorageHealth, is_no_space
from appliance.digests import DigestHasher
from appliance.errors import ApplianceError, IntegrityError, UpstreamError
from appliance.tasks import OwnedTasks

log = logging.getLogger(__name__)

# Reservation step for fills whose size is unknown until the end.
UNKNOWN_SIZE_STEP = 8 * 1024 * 1024
_PROGRESS_INTERVAL = 0.25
_FREE_SPACE_TTL = 1.0
# Pass-through chunks at least this big are hashed off the loop.
_HASH_INLINE = 64 * 1024


class _Hashing:
    """The fill's digest, and how many bytes went into it (a failed write may or may not have)."""

    __slots__ = ("count", "hasher")

    def __init__(self, hasher: DigestHasher) -> None:
        self.hasher = hasher
        self.count = 0

    def update(self, data: bytes) -> None:
        self.hasher.update(data)
        self.count += len(data)

    async def update_off_loop(self, data: bytes) -> None:
        if len(data) >= _HASH_INLINE:
            await asyncio.to_thread(self.update, data)
        else:
            self.update(data)


class FillManager:
    """Starts fills, lets requests join them, and owns their tasks."""

    def __init__(
        self,
        store: BlobStore,
        index: CacheIndex,
        evictor: Evictor,
        leases: Leases,
        *,
        min_free_disk: int,
        on_progress: Callable[[FillProgress], None] | None = None,
        clock: Callable[[], float] = time.time,
        health: StorageHealth | None = None,
    ) -> None:
        self._store = store
        self.health = health or StorageHealth(min_free_disk, clock=clock)
        self._index = index
        self._evictor = evictor
        self._leases = leases
        self.min_free_disk = min_free_disk
        self._on_progress = on_progress
        self._clock = clock
        self._fills: dict[BlobKey, Fill] = {}
        self._tasks = OwnedTasks()
        self._statfs: tuple[float, int | None] | None = None
        self._statfs_refresh: asyncio.Task[None] | None = None
        self._admitted_since_statfs = 0

    def get(self, key: BlobKey) -> Fill | None:
        return self._fills.get(key)

    def start(self, key: BlobKey, repository: str, fetch: FetchBlob, expected_size: int | None) -> Fill:
        if key in self._fills:
            raise RuntimeError(f"a fill for {key} is already running")
        fill = Fill(key, repository, expected_size)
        self._fills[key] = fill
        self._leases.acquire(key)
        self._tasks.spawn(self._run(fill, fetch), name=f"cache-fill {key.registry} {key.digest}")
        return fill

    def inflight(self) -> list[FillProgress]:
        return [f.progress() for f in self._fills.values()]

    @property
    def running(self) -> int:
        """Fills in progress."""
        return len(self._fills)

    @property
    def reserved_keys(self) -> list[BlobKey]:
        return list(self._fills)

    async def wait_idle(self) -> None:
        """Wait until every fill running now has finished (committed or failed)."""
        await self._tasks.wait_idle()

    async def close(self) -> None:
        await self._tasks.cancel_all()

    def _report(self, fill: Fill) -> None:
        if self._on_progress is not None:
            self._on_progress(fill.progress())

    async def _run(self, fill: Fill, fetch: FetchBlob) -> None:
        source: BlobSource | None = None
        reserved = 0
        temp: TempBlob | None = None
        handed_over = False
        # The temp object is created while the upstream answers: one storage round trip fewer
        # between the request and its first byte.
        creating = asyncio.ensure_future(self._store.create_temp(fill.key))
        try:
            source = await fetch()
            self._check_size(fill, source)
            if fill.total is None and source.size is not None:
                fill.total = source.size
            reserved = await self._admit(fill)
            if reserved < 0:
                reserved = 0
                handed_over = not fill.starter_gone
                fill.bypass_source = source
                self._forget(fill)
                fill.ready.set_result(FillMode.BYPASS)
                return
            try:
                temp = await creating
            except OSError as exc:
                self._storage_failed("cache temp file", exc)
                handed_over = not fill.starter_gone
                fill.bypass_source = source
                self._forget(fill)
                fill.ready.set_result(FillMode.BYPASS)
                return
            fill.store_in(temp)
            fill.ready.set_result(FillMode.STORE)
            self._report(fill)
            reserved = await self._copy(fill, source, temp, reserved)
            if fill.passthrough:
                return  # served, nothing to commit; the reservation goes in _cleanup
            if await self._commit(fill, temp):
                self._evictor.committed_from_reservation(reserved, fill.written)
                reserved = 0
                fill.committed = True
        except asyncio.CancelledError:
            self._fail(fill, UpstreamError(fill.key.registry, "cache fill cancelled: shutting down"))
            raise
        except ApplianceError as exc:
            self._fail(fill, exc)
        except OSError as exc:
            if source is None:  # fetch() itself: a connection error or timeout, the waiters' to see
                self._fail(fill, UpstreamError(fill.key.registry, f"fetch failed: {type(exc).__name__}"), exc)
                return
            log.warning("cache fill of %s failed on local storage: %s", fill.key.digest, exc)
            self._fail(fill, UpstreamError(fill.key.registry, f"cache storage failed: {exc.strerror}"))
        except Exception as exc:  # a fetch() that raised something else: waiters still get it
            log.warning("cache fill of %s failed: %r", fill.key.digest, exc)
            self._fail(fill, UpstreamError(fill.key.registry, f"fetch failed: {type(exc).__name__}"), exc)
        finally:
            await self._cleanup(fill, source, temp, reserved, handed_over)
            if temp is None:
                await self._drop_unused(creating)

    @staticmethod
    async def _drop_unused(creating: asyncio.Future[TempBlob]) -> None:
        """Discard a temp object the fill never used (the fetch failed, or the blob bypasses)."""
        # Not cancelled: a file being opened on a thread would be left behind with its descriptor.
        try:
            temp = await creating
        except OSError:
            return  # creating it failed: nothing to remove
        await temp.discard()
        await temp.release()

    @staticmethod
    def _landed(fill: Fill, written: int, landing: asyncio.Future[None]) -> None:
        if not landing.cancelled() and landing.exception() is None and written > fill.written:
            fill.written = written
            fill.notify()

    @staticmethod
    def _check_size(fill: Fill, source: BlobSource) -> None:
        if fill.total is not None and source.size is not None and fill.total != source.size:
            raise IntegrityError(
                fill.key.registry,
                f"{fill.key.digest}: upstream announced {source.size} bytes, expected {fill.total}",
            )

    async def _admit(self, fill: Fill) -> int:
        """Reserve space for the fill; -1 means serve it without storing (BYPASS)."""
        need = fill.total if fill.total is not None else UNKNOWN_SIZE_STEP
        free = await self._free_space()
        if self.health.full:
            log.info("cache bypass for %s: the cache disk is full", fill.key.digest)
            return -1
        if free is not None and free - need < self.min_free_disk:
            log.info("cache bypass for %s: free disk below the watermark", fill.key.digest)
            return -1
        try:
            fits = await self._evictor.reserve(need)
        except (OSError, sqlite3.Error) as exc:  # evicting to make room wrote to a full disk
            self._storage_failed("cache eviction", exc)
            return -1
        if not fits:
            log.info("cache bypass for %s: %d bytes do not fit under the cap", fill.key.digest, need)
            return -1
        self._admitted_since_statfs += need
        return need

    async def look_at_disk(self) -> None:
        """Ask the store for its free space now (status views), not at the next admission."""
        await self._refresh_free_space()

    async def room_to_store(self) -> bool:
        """False while the cache disk is full (looked at again at most once a second)."""
        if self.health.full:
            await self._free_space()
        return not self.health.full

    async def _free_space(self) -> int | None:
        # Asked at most once a second (a thread hop per blob otherwise); in between, what was
        # admitted since counts as used.  Only the first fill waits for the answer: later ones
        # take the last one while a fresh one is asked for (a thread hop on the first blob of
        # every pull otherwise, ~1 ms before its first byte).  The cache's own cap is exact.
        if self._statfs is None:
            await self._refresh_free_space()
        elif time.monotonic() - self._statfs[0] >= _FREE_SPACE_TTL and self._statfs_refresh is None:
            self._statfs_refresh = self._tasks.spawn(self._refresh_free_space(), name="cache free space")
        assert self._statfs is not None
        free = self._statfs[1]
        return None if free is None else free - self._admitted_since_statfs

    async def _refresh_free_space(self) -> None:
        try:
            asked = time.monotonic()
            free = await self._store.free_space()
            self._statfs = (asked, free)
            self._admitted_since_statfs = 0
            self.health.saw_free(free)
        except OSError as exc:
            log.warning("cache free space check failed: %s", exc)
            if self._statfs is None:
                self._statfs = (time.monotonic(), None)
        finally:
            self._statfs_refresh = None

    async def _copy(self, fill: Fill, source: BlobSource, temp: TempBlob, reserved: int) -> int:
        hashing = _Hashing(fill.key.digest.hasher())
        last_report = time.monotonic()
        # One chunk is written and hashed (off the loop) while the next one is received: without
        # this overlap the upstream connection idles during every disk write (a cold pull ran at
        # ~1/3 of a direct one).  At most two chunks are held, and writes stay in order.
        landing: asyncio.Future[None] | None = None
        received = 0
        try:
            async for chunk in source.chunks:
                if not chunk:
                    continue
                size = received + len(chunk)
                if fill.total is not None and size > fill.total:
                    raise IntegrityError(
                        fill.key.registry, f"{fill.key.digest}: upstream sent more than {fill.total} bytes"
                    )
                if fill.passthrough:
                    fill.receive(chunk)
                    received = size
                    await hashing.update_off_loop(chunk)
                    await self._hold_back(fill)
                    continue
                while size > reserved:
                    if not await self._evictor.reserve(UNKNOWN_SIZE_STEP):
                        raise UpstreamError(
                            fill.key.registry, "cache full: cannot store a blob of unknown size"
                        )
                    reserved += UNKNOWN_SIZE_STEP
                fill.receive(chunk)
                if landing is not None:
                    pending, landing = landing, None
                    if not await self._landed_or_lost(fill, received, pending, temp, hashing):
                        received = size
                        continue
                    now = time.monotonic()
                    if now - last_report >= _PROGRESS_INTERVAL:
                        last_report = now
                        self._report(fill)
                landing = asyncio.ensure_future(temp.write(chunk, hashing.update))
                # Lagging readers see the bytes once they are on disk, not when the next chunk comes.
                landing.add_done_callback(functools.partial(self._landed, fill, size))
                received = size
            if landing is not None:
                pending, landing = landing, None
                await self._landed_or_lost(fill, received, pending, temp, hashing)
        except ApplianceError:
            raise
        except Exception as exc:  # the upstream body iterator: aiohttp/OS errors mid-stream
            raise UpstreamError(
                fill.key.registry, f"upstream stream failed after {received} bytes: {type(exc).__name__}"
            ) from exc
        finally:
            if landing is not None:
                # Failed mid-chunk: let the last write finish before the temp file is discarded.
                await asyncio.gather(landing, return_exceptions=True)
        if fill.total is not None and received != fill.total:
            raise IntegrityError(
                fill.key.registry,
                f"{fill.key.digest}: upstream cut off at {received} of {fill.total} bytes",
            )
        if not hashing.hasher.matches(fill.key.digest):
            raise IntegrityError(
                fill.key.registry,
                f"{fill.key.digest}: upstream sent bytes hashing to {hashing.hasher.digest()}",
            )
        fill.total = received
        # Readers may finish now: fsync, rename and index rows (the commit) need not delay clients.
        fill.verified = True
        fill.notify()
        return reserved

    async def _landed_or_lost(
        self, fill: Fill, written: int, landing: asyncio.Future[None], temp: TempBlob, hashing: _Hashing
    ) -> bool:
        """Wait for a write; False when it failed and the fill went on as a pass-through."""
        try:
            await landing
        except OSError as exc:
            await self._lose_storage(fill, temp, hashing, exc)
            return False
        # Its done-callback may not have run yet (a finished future does not yield); ``written``
        # must be current before the next ``receive`` drops it from memory.
        self._landed(fill, written, landing)
        return True

    async def _lose_storage(self, fill: Fill, temp: TempBlob, hashing: _Hashing, exc: OSError) -> None:
        """A write failed: stream the rest from upstream to the readers, store nothing (fill.py)."""
        self._storage_failed(f"cache fill of {fill.key.digest}", exc, passthrough=True)
        held = fill.lose_storage()
        for start, chunk in held:  # the failed write may or may not have hashed its chunk
            if start >= hashing.count:
                await hashing.update_off_loop(chunk)
        # Removed now, not at the end: readers behind keep reading it through its open handle,
        # and its space comes back when the last of them is done.
        with contextlib.suppress(OSError):
            await temp.discard()
        fill.notify()

    @staticmethod
    async def _hold_back(fill: Fill) -> None:
        """A pass-through fill waits for its slowest reader: bounded memory, no reader cut off."""
        while fill.readers and fill.held() > PASSTHROUGH_HELD:
            await fill.moved.wait()  # checked and taken with no await between: no wake-up is lost

    async def _commit(self, fill: Fill, temp: TempBlob) -> bool:
        """Make the verified bytes an entry; False when local storage failed (nothing committed).

        Its readers have their bytes whatever happens here: the temp object stays readable.
        """
        # Row first as 'pending', then the rename, then 'ready': a crash between any two steps is
        # finished (or undone) at the next start without scanning the store.
        try:
            await self._index.add_pending(fill.key, fill.written, None, self._clock())
        except sqlite3.Error as exc:
            self._storage_failed(f"cache index row for {fill.key.digest}", exc)
            await self._discard_quietly(temp)
            return False
        try:
            await temp.commit()
        except OSError as exc:
            self._storage_failed(f"cache commit of {fill.key.digest}", exc)
            await self._discard_quietly(temp)
            await self._unrecord(fill.key)
            return False
        try:
            await self._index.mark_ready(fill.key, fill.repository)
        except sqlite3.Error as exc:
            # The file is in place under a 'pending' row: remove the file to give the space back;
            # a row left behind has no file, and the next start drops it.
            self._storage_failed(f"cache index row for {fill.key.digest}", exc)
            with contextlib.suppress(OSError):
                await self._store.delete(fill.key)
            await self._unrecord(fill.key)
            return False
        for repository in sorted(fill.other_repositories):
            try:
                await self._index.add_ref(fill.key.registry, repository, str(fill.key.digest))
            except sqlite3.Error as exc:
                self.health.dropped("add_ref", exc)
        return True

    async def _unrecord(self, key: BlobKey) -> None:
        try:
            await self._index.remove([key])
        except sqlite3.Error as exc:
            log.warning("cache index: row of %s left for the next start to drop: %s", key.digest, exc)

    @staticmethod
    async def _discard_quietly(temp: TempBlob) -> None:
        with contextlib.suppress(OSError):
            await temp.discard()

    def _storage_failed(self, what: str, exc: BaseException, *, passthrough: bool = False) -> None:
        log.warning("%s failed on local storage (%s): passing the bytes through uncached", what, exc)
        if passthrough:
            self.health.passthrough(what, exc)
        else:
            self.health.failed(what, exc)
        if is_no_space(exc):
            self._statfs = None  # the next admission looks at the disk again

    def _fail(self, fill: Fill, error: ApplianceError, original: Exception | None = None) -> None:
        fill.error = error
        if not fill.ready.done():
            fill.ready.set_exception(original or error)
            # Retrieved by every waiter; mark it retrieved so a fill nobody waits on logs nothing.
            fill.ready.exception()
        log.info("cache fill of %s from %s failed: %s", fill.key.digest, fill.key.registry, error)

    def _forget(self, fill: Fill) -> None:
        if self._fills.get(fill.key) is fill:
            del self._fills[fill.key]
            self._leases.release(fill.key)

    async def _cleanup(
        self, fill: Fill, source: BlobSource | None, temp: TempBlob | None, reserved: int, handed_over: bool
    ) -> None:
        self._forget(fill)
        if reserved:
            self._evictor.release(reserved)
        if fill.error is not None and temp is not None:
            await temp.discard()
        if source is not None and not handed_over:
            try:
                await source.close()
            except Exception as exc:  # whatever the upstream client raises while releasing
                log.debug("closing upstream response failed: %s", exc)
        fill.finished = True
        fill.notify()
        self._report(fill)
        await fill.release_if_idle()
