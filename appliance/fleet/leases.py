"""Leases: which replica does a piece of work (fill a blob, refresh a tag, run the janitor), by S3 alone.

A lease is a small JSON object ``{owner, advertise_url, expires, nonce}``:

* **acquire** creates it with ``If-None-Match: *``: of all replicas racing for the same name, exactly
  one create succeeds; the others read who holds it (and where to follow its work);
* **renew** overwrites it with ``If-Match: <etag we wrote>`` every TTL/3, pushing ``expires`` on;
  a refused renewal means someone took the lease over: the holder must stop publishing;
* **takeover**: a lease whose ``expires`` has passed (its owner stopped renewing: killed, cut off)
  is overwritten with ``If-Match: <etag read>``, so of several replicas taking over, one wins;
* **release** deletes it with ``If-Match: <etag we wrote>``: a lease that is no longer ours (it
  expired and was taken over) is never deleted from under its new owner.

``expires`` is the owner's wall clock; replicas are assumed to agree on the time within a few seconds
(NTP), which ``TAKEOVER_GRACE`` absorbs.  The ``nonce`` tells one holding from another by the same
replica, and settles a create whose answer was lost (read back: is it our nonce?).

Names: ``lease_name(kind, key)`` is ``leases/<kind>/<key>.json``; the janitor's is ``janitor.lease``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.fleet.bucket import Bucket, BucketError, NotFound, PreconditionFailed
from appliance.tasks import OwnedTasks

log = logging.getLogger(__name__)

# Seconds past ``expires`` before another replica takes a lease over (clock skew between replicas).
TAKEOVER_GRACE = 2.0
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,500}$")


def lease_name(kind: str, key: str) -> str:
    """``leases/<kind>/<key>.json``; ``key`` may hold '/' (tags: ``registry/repo/tag``) but no '..'."""
    if not _KIND_RE.fullmatch(kind):
        raise ValueError(f"invalid lease kind {kind!r}")
    if not _KEY_RE.fullmatch(key) or ".." in key or "//" in key:
        raise ValueError(f"invalid lease key {key!r}")
    return f"leases/{kind}/{key}.json"


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What a lease object holds."""

    owner: str  # replica_id
    advertise_url: str  # where peers follow the owner's work (/_fleet/v1/...)
    expires: float  # epoch seconds, the owner's clock
    nonce: str  # this holding's own id

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "advertise_url": self.advertise_url,
                "expires": self.expires,
                "nonce": self.nonce,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseRecord:
        """The record, or a ``ValueError`` for an object that is not one (treated as expired)."""
        try:
            raw = json.loads(data)
            return cls(str(raw["owner"]), str(raw["advertise_url"]), float(raw["expires"]), str(raw["nonce"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a lease record: {type(exc).__name__}") from None

    def expired(self, now: float) -> bool:
        return now > self.expires + TAKEOVER_GRACE


@dataclass(slots=True)
class Lease:
    """A lease this replica holds; ``lost`` is set when a renewal was refused (someone took over)."""

    name: str
    record: LeaseRecord
    etag: str
    taken_over: bool = False  # acquired from an expired holder rather than created
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    released: bool = False
    keeper: asyncio.Task[Any] | None = None  # the renewing task, stopped by ``release``

    @property
    def held(self) -> bool:
        return not self.lost.is_set() and not self.released


@dataclass(frozen=True, slots=True)
class Holder:
    """Someone else's lease, as read: follow ``record.advertise_url``, or wait for it to expire."""

    name: str
    record: LeaseRecord | None  # None: the object was not a lease record (it will be taken over)
    etag: str


class Leases:
    """Acquire, renew, take over and release leases in one bucket, as replica ``owner``."""

    def __init__(
        self,
        bucket: Bucket,
        owner: str,
        advertise_url: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bucket = bucket
        self.owner = owner
        self.advertise_url = advertise_url
        self.ttl = ttl
        self.clock = clock
        self._tasks = OwnedTasks()

    def _record(self, nonce: str) -> LeaseRecord:
        return LeaseRecord(self.owner, self.advertise_url, self.clock() + self.ttl, nonce)

    async def read(self, name: str) -> Holder | None:
        """The lease object ``name`` as it is now, or None when there is none."""
        try:
            info, data = await self.bucket.get(name)
        except NotFound:
            return None
        try:
            record: LeaseRecord | None = LeaseRecord.from_bytes(data)
        except ValueError:
            record = None
        return Holder(name, record, info.etag)

    async def acquire(self, name: str) -> Lease | Holder:
        """The lease (ours now), or the current holder when another replica holds it unexpired."""
        for _ in range(4):
            nonce = secrets.token_hex(8)
            record = self._record(nonce)
            try:
                etag = await self.bucket.create(name, record.to_bytes(), content_type="application/json")
                return Lease(name, record, etag)
            except PreconditionFailed:
                pass
            except BucketError as exc:
                if exc.status:  # an answer that was not "exists": the store refused us
                    raise
                # No answer: the create may have happened.  Read back whose it is.
            holder = await self.read(name)
            if holder is None:
                continue  # released (or never written) meanwhile: try to create again
            if holder.record is not None and holder.record.nonce == nonce:
                return Lease(name, holder.record, holder.etag)
            if holder.record is not None and not holder.record.expired(self.clock()):
                return holder
            taken = await self._take_over(holder)
            if taken is not None:
                return taken
        # Four rounds of others creating, releasing and taking over: report whoever holds it now.
        holder = await self.read(name)
        return holder if holder is not None else Holder(name, None, "")

    async def _take_over(self, holder: Holder) -> Lease | None:
        record = self._record(secrets.token_hex(8))
        try:
            etag = await self.bucket.replace(
                holder.name, record.to_bytes(), holder.etag, content_type="application/json"
            )
        except PreconditionFailed:
            return None  # another replica took it over (or its owner renewed) first
        previous = holder.record.owner if holder.record else "?"
        log.info("fleet: took over lease %s from %s (it stopped renewing)", holder.name, previous)
        return Lease(holder.name, record, etag, taken_over=True)

    async def renew(self, lease: Lease) -> bool:
        """Push the lease's expiry on; False (and ``lease.lost`` set) when it is no longer ours."""
        if not lease.held:
            return False
        record = replace(lease.record, expires=self.clock() + self.ttl)
        try:
            lease.etag = await self.bucket.replace(
                lease.name, record.to_bytes(), lease.etag, content_type="application/json"
            )
        except PreconditionFailed:
            lease.lost.set()
            log.warning("fleet: lease %s was taken over; this replica stops its work", lease.name)
            return False
        lease.record = record
        return True

    async def release(self, lease: Lease) -> None:
        """Delete the lease if it is still ours (a lease taken over is left to its new owner)."""
        if lease.released:
            return
        lease.released = True
        if lease.keeper is not None and lease.keeper is not asyncio.current_task():
            # A renewal in flight would change the ETag under the conditional delete below.
            lease.keeper.cancel()
            await asyncio.gather(lease.keeper, return_exceptions=True)
        if lease.lost.is_set():
            return
        try:
            await self.bucket.delete(lease.name, if_match=lease.etag)
        except PreconditionFailed:
            pass  # no longer ours: never delete another replica's lease
        except BucketError as exc:
            # Left to expire (TTL) and to the janitor's sweep of dead leases.
            log.warning("fleet: could not release lease %s: %s", lease.name, exc)

    async def keep(self, lease: Lease) -> None:
        """Renew ``lease`` every TTL/3 until it is released or lost (run as a task)."""
        interval = self.ttl / 3
        while lease.held:
            await asyncio.sleep(interval)
            if not lease.held:
                return
            try:
                if not await self.renew(lease):
                    return
            except BucketError as exc:
                # A missed renewal is survivable (two more before expiry); past expiry, give up.
                log.warning("fleet: renewing lease %s failed: %s", lease.name, exc)
                if self.clock() > lease.record.expires:
                    lease.lost.set()
                    return

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[Lease | Holder]:
        """Acquire ``name`` and keep it renewed while the block runs; released at the end."""
        got = await self.acquire(name)
        if isinstance(got, Holder):
            yield got
            return
        self.start_keeping(got)
        try:
            yield got
        finally:
            await self.release(got)

    def start_keeping(self, lease: Lease) -> None:
        """Renew ``lease`` in the background until ``release`` (for work that outlives a block)."""
        lease.keeper = self._tasks.spawn(self.keep(lease), name=f"fleet-lease:{lease.name}")

    async def close(self) -> None:
        await self._tasks.cancel_all(grace=5.0)
