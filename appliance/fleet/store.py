"""``S3BlobStore``: the fleet's bucket behind the cache's ``BlobStore`` interface.

Objects are content-addressed and shared by every registry: a blob is ``blobs/<algorithm>/<hex>``, a
manifest ``manifests/<algorithm>/<hex>`` under the store's prefix, whatever registry it came from
(who may read it is settled per repository by the links, see ``tier``).  A scan reports them under
the registry name ``SHARED_REGISTRY``.

A temp object is a multipart upload, begun only once a first full part (8 MiB) has arrived, so a
small blob is one conditional PUT at commit.  Parts upload in the background, at most
``QUEUED_PARTS`` waiting, so a fill streams on while the previous part uploads and memory stays
bounded.  ``commit`` publishes with ``If-None-Match: *``: an object already there (another replica
published the same digest first) is left as it is, and ours is dropped.  Nothing is visible under
the name before ``commit``; ``discard`` aborts the upload.  The caller checks the digest first
(create before publish: the bucket never holds a partial or wrong object).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from appliance.cache.blobstore import BlobKey, BlobStore, Kind, ObjectReader, StoredObject, TempBlob
from appliance.digests import Algorithm, Digest, DigestHasher, parse_digest
from appliance.fleet.bucket import Bucket, BucketError, Part, PreconditionFailed

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
QUEUED_PARTS = 2
SHARED_REGISTRY = "fleet"  # the registry name scans report bucket objects under
_FOLDERS = {Kind.BLOB: "blobs", Kind.MANIFEST: "manifests"}


def object_name(kind: Kind, digest: Digest) -> str:
    return f"{_FOLDERS[kind]}/{digest.algorithm}/{digest.hex}"


def parse_object_name(name: str) -> tuple[Kind, Digest] | None:
    """The kind and digest of ``blobs/sha256/<hex>``, or None for any other name."""
    parts = name.split("/")
    if len(parts) != 3:
        return None
    kinds = {folder: kind for kind, folder in _FOLDERS.items()}
    if parts[0] not in kinds:
        return None
    try:
        return kinds[parts[0]], parse_digest(f"{parts[1]}:{parts[2]}")
    except ValueError:
        return None


class S3ObjectReader(ObjectReader):
    """A committed object, read with Range requests."""

    def __init__(self, bucket: Bucket, name: str, size: int) -> None:
        self.size = size
        self.path = None
        self._bucket = bucket
        self._name = name

    async def read_at(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        _, data = await self._bucket.get(self._name, start=offset, end=min(self.size, offset + length))
        return data

    async def close(self) -> None:
        return None


class S3TempBlob(TempBlob):
    """A multipart upload in progress (see the module docstring)."""

    def __init__(self, bucket: Bucket, name: str, *, part_size: int = PART_SIZE) -> None:
        self._bucket = bucket
        self._name = name
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[Part] = []
        self._queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(QUEUED_PARTS)
        self._uploader: asyncio.Task[None] | None = None
        self._next_part = 1
        self.size = 0
        self.done = False

    async def write(self, data: bytes, also: Callable[[bytes], object] | None = None) -> None:
        if also is not None:
            if len(data) >= 64 * 1024:
                await asyncio.to_thread(also, data)
            else:
                also(data)
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            await self._enqueue(part)

    async def _enqueue(self, part: bytes) -> None:
        if self._uploader is None:
            self._upload_id = await self._bucket.create_upload(self._name)
            self._uploader = asyncio.ensure_future(self._upload_parts())
        elif self._uploader.done():
            self._uploader.result()  # raises the upload's failure here, in the fill
        number = self._next_part
        self._next_part += 1
        await self._put((number, part))

    async def _put(self, item: tuple[int, bytes] | None) -> None:
        """Queue ``item`` for the uploader; its failure is raised here instead of waiting forever."""
        assert self._uploader is not None
        putting = asyncio.ensure_future(self._queue.put(item))
        await asyncio.wait({putting, self._uploader}, return_when=asyncio.FIRST_COMPLETED)
        if not putting.done():
            putting.cancel()
            if self._uploader.cancelled():
                raise BucketError("UploadPart", self._name, 0, "UploadCancelled")
            self._uploader.result()  # the upload's BucketError
            raise BucketError("UploadPart", self._name, 0, "UploaderStopped")

    async def _upload_parts(self) -> None:
        assert self._upload_id is not None
        while (item := await self._queue.get()) is not None:
            number, data = item
            self._parts.append(await self._bucket.upload_part(self._name, self._upload_id, number, data))

    async def read_at(self, offset: int, length: int) -> bytes:
        raise OSError("an S3 upload in progress cannot be read back")

    async def commit(self) -> None:
        """Publish (``If-None-Match: *``); an object already under the name stays, ours is dropped."""
        try:
            if self._uploader is None:
                await self._bucket.create(self._name, bytes(self._buffer))
            else:
                if self._buffer:
                    await self._enqueue(bytes(self._buffer))
                    self._buffer.clear()
                await self._put(None)
                await self._uploader
                assert self._upload_id is not None
                parts = sorted(self._parts, key=lambda p: p.number)
                await self._bucket.complete_upload(self._name, self._upload_id, parts, create=True)
        except PreconditionFailed:
            # Content-addressed: what another replica published first has the same bytes.
            await self.discard()
        self.done = True

    async def discard(self) -> None:
        if self._uploader is not None and not self._uploader.done():
            self._uploader.cancel()
            with contextlib.suppress(asyncio.CancelledError, BucketError):
                await self._uploader
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                await self._bucket.abort_upload(self._name, upload_id)
            except BucketError as exc:
                # The janitor aborts uploads left behind (it lists them); nothing was published.
                log.warning("fleet: aborting upload of %s failed: %s", self._name, exc)
        self._buffer.clear()

    async def release(self) -> None:
        return None


class S3BlobStore(BlobStore):
    """The bucket's blobs and manifests (see the module docstring); the bucket is started by its owner."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    def name(self, key: BlobKey) -> str:
        return object_name(key.kind, key.digest)

    async def start(self) -> int:
        return 0

    async def close(self) -> None:
        return None

    async def create_temp(self, key: BlobKey) -> S3TempBlob:
        return S3TempBlob(self.bucket, self.name(key))

    async def open(self, key: BlobKey) -> ObjectReader | None:
        info = await self.bucket.head(self.name(key))
        return None if info is None else S3ObjectReader(self.bucket, info.name, info.size)

    async def exists(self, key: BlobKey) -> bool:
        return await self.bucket.head(self.name(key)) is not None

    async def delete(self, key: BlobKey) -> None:
        await self.bucket.delete(self.name(key))

    async def put_small(self, key: BlobKey, data: bytes) -> None:
        try:
            await self.bucket.create(self.name(key), data)
        except PreconditionFailed:
            pass  # content-addressed: already there

    async def scan(self) -> AsyncIterator[StoredObject]:
        for folder in _FOLDERS.values():
            async for info in self.bucket.list(folder + "/"):
                parsed = parse_object_name(info.name)
                if parsed is None:
                    continue
                kind, digest = parsed
                yield StoredObject(BlobKey(SHARED_REGISTRY, kind, digest), info.size, info.modified)

    async def hash(self, key: BlobKey, algorithm: Algorithm) -> Digest | None:
        hasher = DigestHasher(algorithm)
        try:
            stream = await self.bucket.open(self.name(key))
        except BucketError as exc:
            if exc.status == 404:
                return None
            raise
        async for chunk in stream.chunks(1024 * 1024):
            await asyncio.to_thread(hasher.update, chunk)
        return hasher.digest()

    async def free_space(self) -> int | None:
        return None

    async def strays(self, *, remove: bool) -> list[str]:
        """Objects under blobs/ or manifests/ whose names are not digests."""
        found: list[str] = []
        for folder in _FOLDERS.values():
            async for info in self.bucket.list(folder + "/"):
                if parse_object_name(info.name) is None:
                    found.append(info.name)
                    if remove:
                        await self.bucket.delete(info.name)
        return found
