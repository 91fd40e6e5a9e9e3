"""``ManifestCache``: byte-exact manifest bodies by digest, and tag records keyed by Accept class.

Bodies share the blob store and index (kind ``manifest``), so they obey the same cap, eviction and
crash rules.  A tag record maps (registry, repository, tag, accept_class) to the digest and media
type upstream answered for that kind of Accept header; freshness policy (TTL tiers, HEAD
revalidation, serving stale) belongs to the caller, which reads ``fetched_at``.

Storing is never what fails a manifest request: when the disk is full (or the index cannot write)
``put`` counts the failure and returns False, and the caller serves the body it already has.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
from dataclasses import dataclass

from appliance.cache.blobs import BlobCache
from appliance.cache.blobstore import MANIFEST_MAX, BlobKey, Kind
from appliance.cache.index import CacheIndex
from appliance.cache.index_records import TagRecord
from appliance.cache.links import referenced_digests
from appliance.cache.tiers import SharedTier
from appliance.cache.verify import sniff_media_type
from appliance.errors import IntegrityError

log = logging.getLogger(__name__)

# Hashing a body smaller than this on the loop costs less than a thread hop.
_HASH_INLINE = 64 * 1024
# (registry, repository, manifest) whose links this process wrote: a warm pull served the same
# manifest again writes nothing.
_LINKED_KEPT = 4096


@dataclass(frozen=True, slots=True)
class StoredManifest:
    body: bytes
    media_type: str
    digest: str

    @property
    def size(self) -> int:
        return len(self.body)


class ManifestCache:
    def __init__(self, blobs: BlobCache) -> None:
        self._blobs = blobs
        self._index = blobs.index
        self._store = blobs.store
        self._linked: collections.OrderedDict[tuple[str, str, str, str], None] = collections.OrderedDict()
        self._linked_since = 0  # the index's purge count when ``_linked`` was last valid

    @property
    def index(self) -> CacheIndex:
        return self._index

    @property
    def tier(self) -> SharedTier | None:
        """The shared tier under the cache (the fleet's), or None: tag checks go through it too."""
        return self._blobs.tier

    async def is_linked(self, registry: str, repository: str, digest: str, credential: str = "") -> bool:
        return await self._index.is_linked(registry, repository, digest, credential)

    def link(
        self, registry: str, repository: str, digest: str, body: bytes, media_type: str, credential: str = ""
    ) -> None:
        """Link ``repository`` to a manifest the upstream vouched for there, and to what it lists.

        ``credential``: the upstream vouched for it to a client's own credential (passed through):
        the links hold for that credential only.  Queued, not waited for: the index's one thread
        runs it before any later lookup, so the client's next request (a blob of this manifest)
        already finds the links.
        """
        key = (registry, repository, digest, credential)
        if self._linked_since != self._index.purges:  # a purge may have dropped links written
            self._linked.clear()
            self._linked_since = self._index.purges
        if key in self._linked:
            self._linked.move_to_end(key)
            return
        listed = (digest, *referenced_digests(body, media_type))
        self._index.add_links_soon(registry, repository, listed, credential)
        self._linked[key] = None
        if len(self._linked) > _LINKED_KEPT:
            self._linked.popitem(last=False)

    async def get_by_digest(self, registry: str, digest: str) -> StoredManifest | None:
        key = BlobKey.of(registry, Kind.MANIFEST, digest)
        leases = self._blobs.leases
        leases.acquire(key)
        try:
            entry = await self._index.get(key)
            if entry is None and self._blobs.tier is not None:
                # The shared tier's copy (another replica stored it); the caller still checks that
                # the repository may see it, as for a local hit.
                shared = await self._blobs.tier.manifest(key.digest)
                if shared is not None:
                    return StoredManifest(shared[0], shared[1], str(key.digest))
            if entry is None or entry.size > MANIFEST_MAX:
                return None
            reader = await self._store.open(key)
            if reader is None:
                await self._blobs.drop_lost(entry)
                return None
            try:
                body = await reader.read_at(0, entry.size)
            finally:
                await reader.close()
            media_type = entry.media_type or sniff_media_type(body)
            if len(body) != entry.size or media_type is None:
                return None
            self._index.touch_soon(key, self._blobs.now())
            return StoredManifest(body, media_type, str(key.digest))
        finally:
            leases.release(key)

    async def put(
        self,
        registry: str,
        repository: str,
        digest: str,
        media_type: str,
        body: bytes,
        tag: str | None = None,
        accept_class: str | None = None,
    ) -> bool:
        """Store a manifest body (and the tag record if ``tag`` is given).

        Raises IntegrityError when the body is over 4 MiB or does not hash to ``digest``.  Returns
        False when the body could not be stored (no room under the cap, or local storage failed:
        a full disk); the tag record is kept anyway when the index can still write it.
        """
        key = BlobKey.of(registry, Kind.MANIFEST, digest)
        if len(body) > MANIFEST_MAX:
            raise IntegrityError(
                registry, f"manifest {digest} is {len(body)} bytes, over the {MANIFEST_MAX} byte limit"
            )
        hasher = key.digest.hasher()
        if len(body) > _HASH_INLINE:
            await asyncio.to_thread(hasher.update, body)
        else:
            hasher.update(body)
        if not hasher.matches(key.digest):
            raise IntegrityError(registry, f"manifest {digest}: body hashes to {hasher.digest()}")
        now = self._blobs.now()
        stored = await self._store_body(key, repository, media_type, body, now)
        if self._blobs.tier is not None:
            self._blobs.tier.publish_manifest(key.digest, media_type, body)
        if tag is not None:
            record = TagRecord(
                registry, repository, tag, accept_class or "", str(key.digest), media_type, len(body), now
            )
            try:
                await self._index.put_tag(record)
            except sqlite3.Error as exc:
                self._blobs.health.failed(f"tag record {repository}:{tag}", exc)
                log.warning("cache index: tag record %s:%s not stored (%s)", repository, tag, exc)
        return stored

    async def _store_body(
        self, key: BlobKey, repository: str, media_type: str, body: bytes, now: float
    ) -> bool:
        leases = self._blobs.leases
        evictor = self._blobs.evictor
        leases.acquire(key)
        try:
            existing = await self._index.get(key)
            if existing is not None:
                try:
                    await self._index.add_ref(key.registry, repository, str(key.digest))
                except sqlite3.Error as exc:
                    self._blobs.health.dropped("add_ref", exc)
                await self._index.touch(key, now)
                return True
            if not await self._blobs.fills.room_to_store():
                return False  # not worth a write that fails: stored again once there is room
            try:
                fits = await evictor.reserve(len(body))
            except (OSError, sqlite3.Error) as exc:  # evicting to make room wrote to a full disk
                self._blobs.health.failed("cache eviction", exc)
                return False
            if not fits:
                return False
            try:
                await self._index.add_pending(key, len(body), media_type, now)
                await self._store.put_small(key, body)
                await self._index.mark_ready(key, repository)
            except (OSError, sqlite3.Error) as exc:
                evictor.release(len(body))
                self._blobs.health.failed(f"manifest {key.digest}", exc)
                log.warning("cache: manifest %s not stored, served uncached (%s)", key.digest, exc)
                await self._unstore(key)
                return False
            except BaseException:
                evictor.release(len(body))
                await self._unstore(key)
                raise
            evictor.committed_from_reservation(len(body), len(body))
            return True
        finally:
            leases.release(key)

    async def _unstore(self, key: BlobKey) -> None:
        """Undo a manifest store that failed part-way; what cannot be undone, the next start does."""
        try:
            await self._store.delete(key)
            await self._index.remove([key])
        except (OSError, sqlite3.Error) as exc:
            log.warning("cache: could not undo the store of manifest %s (%s)", key.digest, exc)

    async def get_tag(self, registry: str, repository: str, tag: str, accept_class: str) -> TagRecord | None:
        return await self._index.get_tag(registry, repository, tag, accept_class)

    async def touch_tag(self, registry: str, repository: str, tag: str, accept_class: str) -> bool:
        """Refresh ``fetched_at`` after a HEAD revalidation matched; False if there is no record."""
        return await self._index.touch_tag(registry, repository, tag, accept_class, self._blobs.now())
