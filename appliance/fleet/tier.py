"""``FleetTier``: where a local fill gets a blob's bytes when replicas share a bucket (``cache.tiers``).

On a local miss (no entry on this replica's disk, no local fill in flight) the local fill asks
``FleetTier.source`` instead of the upstream, which answers, in order:

1. **L2**: the bucket holds ``blobs/<alg>/<hex>``: stream it (the local fill tees it into L1).
2. **Lease won**: nobody is filling it: this replica takes ``leases/blob/<alg>/<hex>.json``, GETs the
   upstream once for the whole fleet, and tees the bytes to its local fill (its clients, its disk,
   other replicas following it) and into a multipart upload, published only once the digest and the
   length were checked (``store.S3TempBlob``); then the lease is released.
3. **Lease lost**: another replica is filling it: follow its fill through its ``/_fleet/v1/fills``
   endpoint (``endpoint.py``).  If that stream breaks, resume at the byte reached: from the bucket
   if the object was published meanwhile, else from the owner again while its lease is alive, else
   by taking the lease over (its owner stopped renewing) and fetching from the upstream, skipping
   the bytes already passed on.

The bytes are only ever a source: the local fill checks the digest before a client gets the last
byte, so a wrong byte from the bucket or a peer fails the fill, never reaches a client whole.

Who may read what: the bucket holds a digest once for every registry and repository.  A repository
is served bytes this replica did not fetch for it only when the upstream vouched for the pair:
``confirm`` (an upstream HEAD) is None when this replica's own links already say so; otherwise a
link marker ``links/<registry>/<repository>/<alg>/<hex>`` (written by whichever replica the upstream
answered a GET or HEAD for the pair) vouches, and failing that the ``confirm`` HEAD runs first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from appliance.cache.blobs import BlobCache
from appliance.cache.blobstore import MANIFEST_MAX, READ_CHUNK, BlobKey, Kind
from appliance.cache.fill import BlobSource, FetchBlob, FillMode
from appliance.cache.readers import BlobReader, FollowReader
from appliance.cache.tiers import CheckTag, Confirm, SharedTier
from appliance.config.fleet import FleetConfig
from appliance.digests import Digest
from appliance.errors import ApplianceError, UpstreamError
from appliance.events import CacheStatus
from appliance.fleet.bucket import Bucket, BucketError, PreconditionFailed
from appliance.fleet.counters import FleetCounters
from appliance.fleet.endpoint import AUTH_HEADER, FILLS, SIZE_HEADER, sign
from appliance.fleet.leases import Holder, Lease, Leases, lease_name
from appliance.fleet.reports import AccessReport
from appliance.fleet.store import S3BlobStore, S3TempBlob, object_name
from appliance.fleet.tags import TagRecords
from appliance.tasks import OwnedTasks

log = logging.getLogger(__name__)

# How long a follower keeps trying (bucket, owner, takeover) without a byte of progress.
_STALL_LIMIT_MIN = 60.0
_RETRY_PAUSE = 0.25
_PEER_RETRY_PAUSE = 1.0
# Digests this replica owned lately, so its endpoint still finds them in L1 after the fill ended.
_RECENT_OWNED = 4096


def link_name(registry: str, repository: str, digest: Digest) -> str:
    return f"links/{registry}/{repository}/{digest.algorithm}/{digest.hex}"


@dataclass(slots=True)
class _Opened:
    """A source of bytes from ``start`` on: the iterator, how to close it, and what it is."""

    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]
    size: int | None
    kind: str  # "l2", "peer", "upstream"


class FleetTier(SharedTier):
    """The fleet's ``SharedTier`` (see the module docstring)."""

    def __init__(
        self,
        fleet: FleetConfig,
        bucket: Bucket,
        leases: Leases,
        blobs: BlobCache,
        counters: FleetCounters,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.bucket = bucket
        self.store = S3BlobStore(bucket)
        self.leases = leases
        self.blobs = blobs
        self.counters = counters
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._tasks = OwnedTasks()
        # digest -> the local key this replica fills (or filled) it under, for its endpoint.
        self._owned: collections.OrderedDict[Digest, BlobKey] = collections.OrderedDict()
        # What this replica served lately, for the janitor's fleet-wide LRU (reports.py).
        self.report = AccessReport(fleet.replica_id, clock=clock)
        # Tag revalidations, one upstream HEAD per stale tag for the fleet (tags.py).
        self.tags = TagRecords(bucket, leases, clock=clock)

    async def start(self) -> None:
        # Its own pool: peers are other replicas, never the upstream, and never through a proxy.
        self._session = aiohttp.ClientSession(
            trust_env=False,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=10, sock_read=max(30.0, self.fleet.lease_ttl)
            ),
        )

    async def close(self) -> None:
        await self._tasks.cancel_all(grace=10.0)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_idle(self) -> None:
        """Wait for publishes in flight (tests, orderly shutdown)."""
        await self._tasks.wait_idle()

    # -- SharedTier ----------------------------------------------------------------------------------

    def accessed(self, digest: Digest) -> None:
        self.report.touch(str(digest))

    async def refresh_tag(
        self,
        registry: str,
        repository: str,
        tag: str,
        accept_class: str,
        check: CheckTag,
        *,
        fresh_for: float,
    ) -> str:
        heard: list[tuple[str, str]] = []

        async def once() -> tuple[str, str]:
            # The upstream is asked at most once per request, whatever the bucket does after.
            if not heard:
                heard.append(await check())
            return heard[0]

        try:
            record = await self.tags.refresh(
                registry, repository, tag, once, fresh_for=fresh_for, accept_class=accept_class
            )
        except BucketError as exc:
            # The bucket cannot coordinate: this replica asks (or has asked) on its own.
            log.warning("fleet: tag record %s/%s:%s: %s", registry, repository, tag, exc)
            digest, _ = await once()
            return digest
        return heard[0][0] if heard else record.digest

    def source(self, key: BlobKey, repository: str, fetch: FetchBlob, confirm: Confirm | None) -> FetchBlob:
        if key.kind is not Kind.BLOB:
            return fetch
        self.report.touch(str(key.digest))

        async def from_fleet() -> BlobSource:
            relay = _Relay(self, key, repository, fetch, confirm)
            first = await relay.open()
            return BlobSource(size=first, chunks=relay.chunks(), close=relay.close)

        return from_fleet

    async def manifest(self, digest: Digest) -> tuple[bytes, str] | None:
        name = object_name(Kind.MANIFEST, digest)
        try:
            stream = await self.bucket.open(name)
            info = stream.info
            if info.size > MANIFEST_MAX:  # never held whole: not a manifest this cache would store
                stream.close()
                return None
            body = b"".join([chunk async for chunk in stream.chunks()])
        except BucketError as exc:
            if exc.status != 404:
                self.counters.failed(f"bucket read: {exc}")
                log.warning("fleet: reading manifest %s failed: %s", digest, exc)
            return None
        hasher = digest.hasher()
        hasher.update(body)
        if len(body) > MANIFEST_MAX or not hasher.matches(digest) or not info.content_type:
            self.counters.failed(f"manifest {digest} in the bucket does not verify")
            log.warning("fleet: manifest %s in the bucket does not verify; ignored", digest)
            return None
        self.counters.l2_hits += 1
        self.report.touch(str(digest))
        return body, info.content_type

    def publish_manifest(self, digest: Digest, media_type: str, body: bytes) -> None:
        self._tasks.spawn(self._publish_manifest(digest, media_type, body), name=f"fleet-manifest {digest}")

    async def _publish_manifest(self, digest: Digest, media_type: str, body: bytes) -> None:
        try:
            await self.bucket.create(object_name(Kind.MANIFEST, digest), body, content_type=media_type)
        except PreconditionFailed:
            return  # content-addressed: already shared
        except BucketError as exc:
            self.counters.publish_failures += 1
            self.counters.failed(f"publishing manifest {digest}: {exc}")
            log.warning("fleet: publishing manifest %s failed: %s", digest, exc)
            return
        self.counters.published += 1

    # -- the endpoint's side ---------------------------------------------------------------------------

    async def open_local(self, digest: Digest) -> BlobReader | None:
        """This replica's reader of a digest it fills or filled (what its endpoint streams), or None."""
        key = self._owned.get(digest)
        if key is None:
            return None
        fill = self.blobs.fills.get(key)
        if fill is not None:
            try:
                mode = await asyncio.shield(fill.ready)
            except Exception:  # the fill failed before its first byte: nothing to follow
                return None
            if mode is FillMode.STORE and not fill.finished:
                self.blobs.leases.acquire(key)
                return FollowReader(fill, CacheStatus.COALESCED, lambda: self.blobs.leases.release(key))
        return await self.blobs.open(key.registry, str(key.digest))

    def _remember(self, key: BlobKey) -> None:
        self._owned[key.digest] = key
        self._owned.move_to_end(key.digest)
        while len(self._owned) > _RECENT_OWNED:
            self._owned.popitem(last=False)

    # -- vouching --------------------------------------------------------------------------------------

    async def vouch(self, key: BlobKey, repository: str, confirm: Confirm | None) -> None:
        """Return only when ``repository`` may be served ``key`` (module docstring), else raise."""
        if confirm is None:
            return
        name = link_name(key.registry, repository, key.digest)
        try:
            marked = await self.bucket.head(name) is not None
        except BucketError as exc:
            log.info("fleet: link marker %s unreadable (%s): asking the upstream", name, exc)
            marked = False
        if marked:
            self.blobs.index.add_links_soon(key.registry, repository, [str(key.digest)])
            return
        await confirm()  # links locally on 200, raises the upstream's answer otherwise
        self.mark_link(key, repository)

    def mark_link(self, key: BlobKey, repository: str) -> None:
        """Record for the fleet that the upstream vouched for the pair (in the background)."""
        self._tasks.spawn(self._put_link(key, repository), name=f"fleet-link {key.digest}")

    async def _put_link(self, key: BlobKey, repository: str) -> None:
        try:
            await self.bucket.put(link_name(key.registry, repository, key.digest), b"")
        except BucketError as exc:
            log.info("fleet: writing a link marker failed: %s", exc)

    # -- sources ---------------------------------------------------------------------------------------

    async def open_l2(self, key: BlobKey, start: int) -> _Opened | None:
        try:
            stream = await self.bucket.open(object_name(key.kind, key.digest), start=start)
        except BucketError as exc:
            if exc.status != 404:
                self.counters.failed(f"bucket read: {exc}")
                log.warning("fleet: reading %s from the bucket failed: %s", key.digest, exc)
            return None
        counters = self.counters

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in stream.chunks(READ_CHUNK):
                counters.l2_bytes += len(chunk)
                yield chunk

        async def close() -> None:
            stream.close()

        return _Opened(chunks(), close, stream.info.size, "l2")

    async def open_peer(self, holder: Holder, digest: Digest, start: int) -> _Opened | None:
        """The owner's fill from ``start``, or None when it cannot be followed (gone, not filling)."""
        if holder.record is None or self._session is None:
            return None
        target = f"{FILLS}{digest}?offset={start}"
        headers = {AUTH_HEADER: sign(self.fleet.token, self.fleet.replica_id, "GET", target, self._clock())}
        url = holder.record.advertise_url + target
        try:
            response = await self._session.get(url, headers=headers, allow_redirects=False)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("fleet: following %s at %s failed: %s", holder.record.owner, url, type(exc).__name__)
            return None
        if response.status != 200:
            response.release()
            log.info("fleet: %s answered %d for %s", holder.record.owner, response.status, digest)
            return None
        size_text = response.headers.get(SIZE_HEADER, "")
        size = int(size_text) if size_text.isdigit() else None
        counters = self.counters

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in response.content.iter_chunked(READ_CHUNK):
                counters.follow_bytes += len(chunk)
                yield chunk

        async def close() -> None:
            response.release()

        return _Opened(chunks(), close, size, "peer")

    async def open_upstream(
        self, lease: Lease, key: BlobKey, repository: str, fetch: FetchBlob, start: int
    ) -> _Opened:
        """As the lease owner: the upstream's bytes, teed into an upload published when verified."""
        self._remember(key)
        self.leases.start_keeping(lease)
        try:
            source = await fetch()
        except BaseException:
            await self.leases.release(lease)
            raise
        self.counters.upstream_fetches += 1
        if lease.taken_over:
            self.counters.lease_takeovers += 1
        else:
            self.counters.lease_wins += 1
        self.mark_link(key, repository)
        temp = await self.store.create_temp(key)
        publish = _Publish(self, key, lease, temp, source.size)
        return _Opened(publish.chunks(source, start), publish.close(source), source.size, "upstream")

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.spawn(coro, name=name)  # type: ignore[arg-type]


class _Publish:
    """The owner's tee: every upstream byte goes to the local fill and into the bucket upload."""

    def __init__(
        self, tier: FleetTier, key: BlobKey, lease: Lease, temp: S3TempBlob, size: int | None
    ) -> None:
        self.tier = tier
        self.key = key
        self.lease = lease
        self.temp = temp
        self.size = size
        self.hasher = key.digest.hasher()
        self.uploading = True  # False once the upload was given up (the fill still streams on)
        self.finished = False

    async def chunks(self, source: BlobSource, skip: int) -> AsyncIterator[bytes]:
        pos = 0
        try:
            async for chunk in source.chunks:
                if not chunk:
                    continue
                if self.uploading:
                    await self._upload(chunk)
                else:
                    await asyncio.to_thread(self.hasher.update, chunk)
                end = pos + len(chunk)
                if end > skip:
                    yield chunk[max(0, skip - pos) :]
                pos = end
        except BaseException:
            self._abandon()
            raise
        self.finished = True
        # Published in the background: the clients' last bytes wait for the local digest check only.
        self.tier.spawn(self._publish(pos), name=f"fleet-publish {self.key.digest}")

    async def _upload(self, chunk: bytes) -> None:
        try:
            await self.temp.write(chunk, self.hasher.update)
        except BucketError as exc:
            # The bucket failing must not fail the clients: they get the bytes, the fleet does not.
            self.uploading = False
            self.tier.counters.publish_failures += 1
            self.tier.counters.failed(f"upload of {self.key.digest}: {exc}")
            log.warning("fleet: uploading %s failed, serving it unshared: %s", self.key.digest, exc)
            self.tier.spawn(self._give_up(), name=f"fleet-abort {self.key.digest}")
        if self.lease.lost.is_set() and self.uploading:
            # Taken over: the new owner publishes; two uploads of one digest are harmless but wasted.
            self.uploading = False
            self.tier.spawn(self._give_up(), name=f"fleet-abort {self.key.digest}")

    async def _publish(self, length: int) -> None:
        try:
            if not self.uploading:
                return
            if not self.hasher.matches(self.key.digest) or (self.size is not None and length != self.size):
                self.tier.counters.publish_failures += 1
                self.tier.counters.failed(f"{self.key.digest}: upstream bytes did not verify; not published")
                await self.temp.discard()
                return
            try:
                await self.temp.commit()
            except BucketError as exc:
                self.tier.counters.publish_failures += 1
                self.tier.counters.failed(f"publishing {self.key.digest}: {exc}")
                log.warning("fleet: publishing %s failed: %s", self.key.digest, exc)
                await self.temp.discard()
                return
            self.tier.counters.published += 1
        finally:
            await self.tier.leases.release(self.lease)

    async def _give_up(self) -> None:
        await self.temp.discard()

    def _abandon(self) -> None:
        """The fill stopped before the end (upstream cut, shutdown): no object, lease released."""
        if self.finished:
            return
        self.finished = True
        self.uploading = False

        async def abandon() -> None:
            try:
                await self.temp.discard()
            finally:
                await self.tier.leases.release(self.lease)

        self.tier.spawn(abandon(), name=f"fleet-abandon {self.key.digest}")

    def close(self, source: BlobSource) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            self._abandon()
            await source.close()

        return close


class _Relay:
    """One local fill's bytes from wherever the fleet has them, resuming at the byte reached."""

    def __init__(
        self, tier: FleetTier, key: BlobKey, repository: str, fetch: FetchBlob, confirm: Confirm | None
    ) -> None:
        self.tier = tier
        self.key = key
        self.repository = repository
        self.fetch = fetch
        self.confirm = confirm
        self.vouched = confirm is None
        self.pos = 0
        self.size: int | None = None
        self.current: _Opened | None = None
        self.lease_counted = False
        self.lease = lease_name("blob", f"{key.digest.algorithm}/{key.digest.hex}")

    async def _vouch(self) -> None:
        if not self.vouched:
            await self.tier.vouch(self.key, self.repository, self.confirm)
            self.vouched = True

    async def open(self) -> int | None:
        """Open the first source; returns the blob's size when known."""
        self.current = await self._next()
        self.size = self.current.size
        return self.size

    async def _next(self) -> _Opened:
        """The next source from ``pos`` on (module docstring, steps 1-3)."""
        tier = self.tier
        stall_limit = max(_STALL_LIMIT_MIN, 4 * tier.fleet.lease_ttl)
        deadline = time.monotonic() + stall_limit
        while True:
            opened = await tier.open_l2(self.key, self.pos)
            if opened is not None:
                return await self._from_l2(opened)
            try:
                got = await tier.leases.acquire(self.lease)
            except BucketError as exc:
                # The bucket is unusable: the upstream serves this fill unshared (safe, only costlier).
                tier.counters.failed(f"lease {self.lease}: {exc}")
                log.warning("fleet: lease for %s failed (%s): fetching unshared", self.key.digest, exc)
                return await self._unshared()
            if isinstance(got, Lease):
                # The owner before us publishes, then releases: the object may have appeared between
                # our look in the bucket and our create of the lease.  Look once more, holding it.
                opened = await tier.open_l2(self.key, self.pos)
                if opened is None:
                    return await tier.open_upstream(got, self.key, self.repository, self.fetch, self.pos)
                await tier.leases.release(got)
                return await self._from_l2(opened)
            pause = _RETRY_PAUSE
            if got.record is not None:
                await self._vouch()
                if not self.lease_counted:
                    self.lease_counted = True
                    tier.counters.lease_losses += 1
                peer = await tier.open_peer(got, self.key.digest, self.pos)
                if peer is not None:
                    if self.size is not None and peer.size is not None and peer.size != self.size:
                        await peer.close()
                        raise UpstreamError(
                            self.key.registry, f"{self.key.digest}: peers disagree on its size"
                        )
                    return peer
                # Not followable (gone, or not filling any more): look in the bucket again soon, and
                # take the lease over once its owner stops renewing it.
                pause = _PEER_RETRY_PAUSE
            if time.monotonic() > deadline:
                raise UpstreamError(
                    self.key.registry, f"{self.key.digest}: no replica made progress for {stall_limit:.0f}s"
                )
            await asyncio.sleep(pause)

    async def _from_l2(self, opened: _Opened) -> _Opened:
        try:
            await self._vouch()
        except BaseException:
            await opened.close()
            raise
        if self.pos == 0:
            self.tier.counters.l2_hits += 1
        return opened

    async def _unshared(self) -> _Opened:
        source = await self.fetch()

        async def skipping() -> AsyncIterator[bytes]:
            pos = 0
            async for chunk in source.chunks:
                end = pos + len(chunk)
                if end > self.pos:
                    yield chunk[max(0, self.pos - pos) :]
                pos = end

        return _Opened(skipping(), source.close, source.size, "upstream")

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            current = self.current
            assert current is not None
            clean = False
            try:
                async for chunk in current.chunks:
                    self.pos += len(chunk)
                    yield chunk
                clean = True
            except ApplianceError:
                if current.kind == "upstream":
                    raise  # this replica's own fetch failed: the fill's waiters get it
            except (aiohttp.ClientError, BucketError, OSError, TimeoutError) as exc:
                if current.kind == "upstream":
                    raise
                log.info(
                    "fleet: %s source of %s broke at byte %d: %s",
                    current.kind,
                    self.key.digest,
                    self.pos,
                    exc,
                )
            finally:
                with contextlib.suppress(Exception):
                    await current.close()
            if clean and (self.size is None or self.pos >= self.size):
                return
            if current.kind == "upstream":
                return  # short upstream body: the fill's own length check reports it
            self.current = await self._next()

    async def close(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            with contextlib.suppress(Exception):
                await current.close()
