"""Tag records shared by the fleet, and tag refreshes that spend the upstream's budget once.

A tag record ``tags/<registry>/<repo>/<tag>.json`` (``<tag>@<class>.json`` for a client Accept class:
the upstream names a different digest per class) holds ``{digest, media_type, fetched_at}``; it is
written by ETag compare-and-swap (create with ``If-None-Match: *``, overwrite with ``If-Match``), so
of two replicas writing the same tag from a stale read, one is refused (``TagConflict``) and re-reads.

``refresh`` asks the upstream (a HEAD or GET of the manifest by tag: ``fetch``) for the whole fleet:
it takes the tag's lease ``leases/tag/<hash>.json``; the replicas that find the lease held wait
(polling, bounded by ``wait_limit``) for the record to change instead of going upstream.  N replicas
whose tag went stale together make one upstream request.  A waiter whose bound passes (the holder
is slow or gone) asks the upstream itself: slower, never stuck; so does one that sees the lease released
with the record unchanged (the holder's answer was not one to share: an error status, no answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from appliance.fleet.bucket import Bucket, PreconditionFailed
from appliance.fleet.leases import Holder, Leases, lease_name

log = logging.getLogger(__name__)

# The upstream's answer for a tag: (digest, media type).
FetchTag = Callable[[], Awaitable[tuple[str, str]]]


class TagConflict(Exception):
    """The tag record changed since it was read (another replica wrote it): re-read it."""


@dataclass(frozen=True, slots=True)
class TagRecord:
    digest: str
    media_type: str
    fetched_at: float  # epoch seconds of the upstream answer it records
    etag: str = ""  # the record object's ETag as read ("" for one not written yet)

    def to_bytes(self) -> bytes:
        body = {"digest": self.digest, "media_type": self.media_type, "fetched_at": self.fetched_at}
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, etag: str) -> TagRecord:
        try:
            raw = json.loads(data)
            return cls(str(raw["digest"]), str(raw["media_type"]), float(raw["fetched_at"]), etag)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a tag record: {type(exc).__name__}") from None


def _class_part(accept_class: str) -> str:
    # An Accept class is a list of media types ("/", ",", "+"): hashed into one name-safe word.
    if not accept_class:
        return ""
    if accept_class == "default":
        return "@default"
    return "@" + hashlib.sha256(accept_class.encode()).hexdigest()[:16]


def tag_name(registry: str, repository: str, tag: str, accept_class: str = "") -> str:
    return f"tags/{registry}/{repository}/{tag}{_class_part(accept_class)}.json"


def tag_lease(registry: str, repository: str, tag: str, accept_class: str = "") -> str:
    # Hashed: a lease key is one path segment per part and tags may hold characters leases refuse.
    named = f"{registry}/{repository}:{tag}{_class_part(accept_class)}"
    key = hashlib.sha256(named.encode()).hexdigest()[:40]
    return lease_name("tag", key)


class TagRecords:
    """The fleet's tag records in one bucket (see the module docstring)."""

    def __init__(
        self,
        bucket: Bucket,
        leases: Leases,
        *,
        wait_limit: float = 10.0,
        poll: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bucket = bucket
        self.leases = leases
        self.wait_limit = wait_limit
        self.poll = poll
        self.clock = clock
        self.upstream_asks = 0  # refreshes this replica sent upstream
        self.coalesced = 0  # refreshes answered by another replica's

    async def read(
        self, registry: str, repository: str, tag: str, accept_class: str = ""
    ) -> TagRecord | None:
        name = tag_name(registry, repository, tag, accept_class)
        info = await self.bucket.head(name)
        if info is None:
            return None
        try:
            info, data = await self.bucket.get(name)
            return TagRecord.from_bytes(data, info.etag)
        except ValueError:
            log.warning("fleet: %s is not a tag record; ignored", name)
            return None

    async def write(
        self, registry: str, repository: str, tag: str, record: TagRecord, accept_class: str = ""
    ) -> TagRecord:
        """Store ``record`` if the object is still at ``record.etag`` ("" = absent), else ``TagConflict``."""
        name = tag_name(registry, repository, tag, accept_class)
        try:
            if record.etag:
                etag = await self.bucket.replace(
                    name, record.to_bytes(), record.etag, content_type="application/json"
                )
            else:
                etag = await self.bucket.create(name, record.to_bytes(), content_type="application/json")
        except PreconditionFailed:
            raise TagConflict(f"{name} changed since it was read") from None
        return replace(record, etag=etag)

    async def refresh(
        self,
        registry: str,
        repository: str,
        tag: str,
        fetch: FetchTag,
        *,
        fresh_for: float,
        accept_class: str = "",
    ) -> TagRecord:
        """The tag's record, at most ``fresh_for`` seconds old, asking the upstream once for the fleet.

        ``fetch`` raising (an answer not to share) leaves the record as it was; the exception is the
        caller's, and the replicas waiting on this one see the lease released and ask themselves.
        """
        at = (registry, repository, tag)
        before = await self.read(*at, accept_class)
        if before is not None and self.clock() - before.fetched_at < fresh_for:
            self.coalesced += 1
            return before
        lease = tag_lease(*at, accept_class)
        async with self.leases.hold(lease) as got:
            if isinstance(got, Holder):
                waited = await self._wait(at, accept_class, lease, before)
                if waited is not None:
                    self.coalesced += 1
                    return waited
                log.info(
                    "fleet: %s/%s:%s not refreshed by its lease holder in time", registry, repository, tag
                )
                return await self._ask(at, accept_class, fetch)
            # Ours: the holder before us may have refreshed it between our read and our lease.
            current = await self.read(*at, accept_class)
            changed = current is not None and (before is None or current.etag != before.etag)
            if current is not None and (changed or self.clock() - current.fetched_at < fresh_for):
                self.coalesced += 1
                return current
            return await self._ask(at, accept_class, fetch)

    async def _wait(
        self, at: tuple[str, str, str], accept_class: str, lease: str, before: TagRecord | None
    ) -> TagRecord | None:
        deadline = time.monotonic() + self.wait_limit
        while time.monotonic() < deadline:
            await asyncio.sleep(self.poll)
            # The lease first: a holder writes the record before it releases, so a lease seen gone
            # and then an unchanged record mean it had nothing to share (not a write still to come).
            holder = await self.leases.read(lease)
            current = await self.read(*at, accept_class)
            if current is not None and (before is None or current.etag != before.etag):
                return current
            if holder is None or (holder.record is not None and holder.record.expired(self.clock())):
                return None  # released with nothing shared, or its holder stopped renewing (gone)
        return None

    async def _ask(self, at: tuple[str, str, str], accept_class: str, fetch: FetchTag) -> TagRecord:
        self.upstream_asks += 1
        digest, media_type = await fetch()
        record = TagRecord(digest, media_type, self.clock())
        for _ in range(3):
            current = await self.read(*at, accept_class)
            if current is not None and current.fetched_at >= record.fetched_at:
                return current  # a newer answer landed meanwhile: keep it
            try:
                return await self.write(
                    *at, replace(record, etag="" if current is None else current.etag), accept_class
                )
            except TagConflict:
                continue
        return record  # three writers in a row beat us: ours is still a true answer for this request
