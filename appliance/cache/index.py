"""The cache's metadata: an SQLite file (WAL) driven from one dedicated worker thread.

Every call hops to that thread, so the event loop never blocks on SQLite and the connection is only
ever used by the thread that opened it.  Nothing is loaded into memory at start: lookups go to the
database, which keeps start-up constant-time whatever the number of entries.

Rows carry a ``state`` so crashes leave a trail the next start can finish cheaply:

* ``pending``: written just before a verified temp file is renamed into place.  At start the row is
  promoted to ``ready`` if the file made it, dropped otherwise (no directory scan needed).
* ``ready``: servable.
* ``deleting``: written before a file is unlinked; at start the unlink is finished and the row dropped.

This module is the async facade and owns the thread and the connection; the schema and connection
settings are in ``index_db``, the queries (plain functions of a connection) in ``index_queries``,
and the records they return in ``index_records``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from appliance.cache import index_db, index_queries
from appliance.cache.blobstore import BlobKey
from appliance.cache.index_records import Entry, EntryState, IndexTotals, RepositoryListing, TagRecord
from appliance.cache.storage_health import StorageHealth

T = TypeVar("T")
# Links known to be in the file, kept in memory: a warm pull's blob requests then cost no extra
# thread hop each (measured: a warm pull of 12 small blobs 8% slower with the hop).  One left here
# after its blob was evicted is harmless: a missing blob is fetched with a GET in that repository.
_LINKS_KEPT = 16384
P = ParamSpec("P")
log = logging.getLogger(__name__)


class CacheIndex:
    """Async facade over the SQLite index; one worker thread owns the connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cache-index")
        self._conn: sqlite3.Connection | None = None
        self.created_fresh = False  # the file did not exist: a lost index, repair may adopt files
        self.purges = 0  # purges so far: links written before one may be gone
        # (registry, repository, digest, credential): links known to exist ("": everyone's).
        self._links: collections.OrderedDict[tuple[str, str, str, str], None] = collections.OrderedDict()
        # Where dropped use records are counted; the cache shares its own (BlobCache sets it).
        self.health = StorageHealth(0)

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    async def _query(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        # The connection is looked up on the worker thread, the only one that ever touches it.
        return await self._call(lambda: fn(self._db, *args, **kwargs))

    def _record(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], object], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Queue bookkeeping no request waits for; it runs in order with every other call.

        A hit's access time and repository reference are not worth two thread hops before its
        first byte (~0.2 ms each, more under load).  Anything asked later sees them, since the one
        worker thread takes calls in order; a failure (a full disk) is counted and dropped, and the
        request it came from has been served anyway.
        """
        try:
            future = self._executor.submit(lambda: fn(self._db, *args, **kwargs))
        except RuntimeError:  # shutting down: the executor takes no more work
            return
        future.add_done_callback(functools.partial(self._dropped_if_failed, fn.__name__))

    def _dropped_if_failed(self, what: str, future: Future[object]) -> None:
        # Runs on the worker thread; the counters are plain ints, read by status views only.
        if future.cancelled():
            return
        exc = future.exception()
        if isinstance(exc, sqlite3.Error):
            self.health.dropped(what, exc)
        elif exc is not None:
            log.warning("cache index bookkeeping failed: %r", exc)

    async def _use_record(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        """A write that only records use: on failure (a full disk) it is counted and dropped."""
        try:
            return await self._query(fn, *args, **kwargs)
        except sqlite3.Error as exc:
            self.health.dropped(fn.__name__, exc)
            return None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("cache index is not open")
        return self._conn

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        self.created_fresh = not self.path.exists()
        self._conn = index_db.connect(self.path)

    async def close(self) -> None:
        if self._conn is not None:
            await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- entries -------------------------------------------------------------------------------

    async def get(self, key: BlobKey, *, ready_only: bool = True) -> Entry | None:
        return await self._query(index_queries.get_entry, key, ready_only)

    async def touch(self, key: BlobKey, now: float) -> None:
        """Record an access (best effort: dropped with a counted warning when the index cannot write)."""
        await self._use_record(index_queries.touch, key, now)

    def touch_soon(self, key: BlobKey, now: float) -> None:
        """``touch`` without waiting for it (see ``_record``)."""
        self._record(index_queries.touch, key, now)

    async def add_pending(self, key: BlobKey, size: int, media_type: str | None, now: float) -> None:
        """Record an object about to be renamed into place (see the module docstring)."""
        await self._query(index_queries.add_pending, key, size, media_type, now)

    async def mark_ready(self, key: BlobKey, repository: str | None) -> None:
        await self._query(index_queries.mark_ready, key, repository)

    async def upsert_ready(self, entry: Entry) -> None:
        """Adopt an object found on disk (verify --repair)."""
        await self._query(index_queries.upsert_ready, entry)

    async def add_ref(self, registry: str, repository: str, digest: str) -> None:
        await self._query(index_queries.add_ref, registry, repository, digest)

    def add_ref_soon(self, registry: str, repository: str, digest: str) -> None:
        """``add_ref`` without waiting for it (see ``_record``)."""
        self._record(index_queries.add_ref, registry, repository, digest)

    async def unfinished(self) -> list[Entry]:
        """Rows a crash left ``pending`` or ``deleting``; few, so a list is fine."""
        return await self._query(index_queries.unfinished)

    async def mark_deleting(self, keys: Iterable[BlobKey]) -> None:
        await self._query(index_queries.set_state, list(keys), EntryState.DELETING)

    async def mark_ready_keys(self, keys: Iterable[BlobKey]) -> None:
        await self._query(index_queries.set_state, list(keys), EntryState.READY)

    async def remove(self, keys: Iterable[BlobKey]) -> None:
        """Drop rows (after their files are gone), and tag records pointing at removed manifests."""
        await self._query(index_queries.remove, list(keys))

    async def lru(self, limit: int, *, older_than: float | None = None) -> list[Entry]:
        """Unpinned ready entries, least recently used first."""
        return await self._query(index_queries.lru, limit, older_than)

    async def entries_after(self, after: BlobKey | None, limit: int) -> list[Entry]:
        """A page of all rows in key order (for verify), without holding them all in memory."""
        return await self._query(index_queries.entries_after, after, limit)

    async def totals(self) -> IndexTotals:
        return await self._query(index_queries.totals)

    # -- links -------------------------------------------------------------------------------

    async def is_linked(self, registry: str, repository: str, digest: str, credential: str = "") -> bool:
        """Whether the upstream vouched for ``digest`` in ``repository`` (see index_db's schema).

        ``credential``: the keyed hash of the client's own upstream credential, if it sent one; a
        link that credential's answer wrote counts too (``passthrough_links``).
        """
        for key in ((registry, repository, digest, ""), (registry, repository, digest, credential)):
            if key in self._links:
                self._links.move_to_end(key)
                return True
        linked = await self._query(index_queries.is_linked, registry, repository, digest, credential)
        if linked:
            # Remembered under the credential that asked: which table answered is not known here,
            # and an engine link found for one credential is re-read for the next one.
            self._remember_links(registry, repository, (digest,), credential)
        return linked

    async def add_links(
        self, registry: str, repository: str, digests: Iterable[str], credential: str = ""
    ) -> None:
        """Link ``digests`` in ``repository``: for everyone, or for ``credential`` only (passthrough)."""
        listed = list(digests)
        await self._query(index_queries.add_links, registry, repository, listed, credential)
        self._remember_links(registry, repository, listed, credential)

    def add_links_soon(
        self, registry: str, repository: str, digests: Iterable[str], credential: str = ""
    ) -> None:
        """``add_links`` without waiting for it (see ``_record``)."""
        listed = list(digests)
        self._record(index_queries.add_links, registry, repository, listed, credential)
        self._remember_links(registry, repository, listed, credential)

    def _remember_links(
        self, registry: str, repository: str, digests: Iterable[str], credential: str = ""
    ) -> None:
        for digest in digests:
            self._links[(registry, repository, digest, credential)] = None
        while len(self._links) > _LINKS_KEPT:
            self._links.popitem(last=False)

    # -- purge and pins ------------------------------------------------------------------------

    async def select_purge(
        self, registry: str | None, repository: str | None, digest: str | None
    ) -> list[Entry]:
        """Forget refs/tags matched by the filter and mark the entries left unreferenced ``deleting``.

        With a repository, only blobs no other repository still references go; otherwise every
        entry matching registry/digest goes.  The caller unlinks the files, then calls ``remove``.
        """
        self.purges += 1
        self._links.clear()  # a purge drops links; the file says which are left
        return await self._query(index_queries.select_purge, registry, repository, digest)

    async def pin(self, registry: str, repository: str, pinned: bool) -> int:
        """Pin or unpin a repository (also its future blobs); returns how many entries it covers."""
        return await self._query(index_queries.pin, registry, repository, pinned)

    # -- tags ----------------------------------------------------------------------------------

    async def put_tag(self, record: TagRecord) -> None:
        await self._query(index_queries.put_tag, record)

    async def get_tag(self, registry: str, repository: str, tag: str, accept_class: str) -> TagRecord | None:
        return await self._query(index_queries.get_tag, registry, repository, tag, accept_class)

    async def touch_tag(
        self, registry: str, repository: str, tag: str, accept_class: str, fetched_at: float
    ) -> bool:
        """Refresh a tag's ``fetched_at``; best effort (a dropped refresh only means an earlier HEAD)."""
        done = await self._use_record(
            index_queries.touch_tag, registry, repository, tag, accept_class, fetched_at
        )
        return done is not False

    # -- listing -------------------------------------------------------------------------------

    async def list_repositories(self, registry: str | None = None) -> list[RepositoryListing]:
        return await self._query(index_queries.list_repositories, registry)
