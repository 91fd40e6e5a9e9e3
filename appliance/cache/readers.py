"""The three ways a client reads a blob: a committed entry, a fill in progress, or straight upstream."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from appliance.cache.blobstore import READ_CHUNK, ObjectReader
from appliance.cache.fill import BlobSource, Fill
from appliance.digests import Digest
from appliance.errors import IntegrityError, UpstreamError
from appliance.events import CacheStatus


class BlobReader(abc.ABC):
    """One client's view of a blob.  Always ``close()`` it: it holds a lease on the entry."""

    status: CacheStatus
    size: int | None  # total size if known (always known for HIT)
    path: Path | None  # a HIT on the filesystem store: the file, for sendfile

    @abc.abstractmethod
    def chunks(
        self, start: int = 0, end: int | None = None, *, size: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)``; raises IntegrityError/UpstreamError if the bytes turn out bad."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> BlobReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _span(start: int, end: int | None, size: int | None) -> tuple[int, int | None]:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid range [{start}, {end})")
    if size is not None:
        end = size if end is None else min(end, size)
    return start, end


class HitReader(BlobReader):
    """A committed entry: reads the file in bounded chunks off the loop."""

    def __init__(self, obj: ObjectReader, release: Callable[[], None], registry: str) -> None:
        self.status = CacheStatus.HIT
        self.size = obj.size
        self.path = obj.path
        self._obj = obj
        self._release: Callable[[], None] | None = release
        self._registry = registry

    async def chunks(
        self, start: int = 0, end: int | None = None, *, size: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        pos, stop = _span(start, end, self.size)
        assert stop is not None
        while pos < stop:
            data = await self._obj.read_at(pos, min(size, stop - pos))
            if not data:
                raise IntegrityError(self._registry, f"cached file shrank: {pos} of {self.size} bytes")
            pos += len(data)
            yield data

    async def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
            await self._obj.close()


class FollowReader(BlobReader):
    """Streams a fill from byte ``start`` while it grows: what it has at once, then as bytes come."""

    def __init__(self, fill: Fill, status: CacheStatus, release: Callable[[], None]) -> None:
        self.status = status
        self.path = None
        self._fill: Fill | None = fill
        self._release = release
        fill.attach()
        # Counted from byte 0 until it starts reading: a pass-through fill keeps what it will need.
        fill.advance(self, 0)

    @property
    def size(self) -> int | None:  # type: ignore[override]
        return None if self._fill is None else self._fill.total

    async def chunks(
        self, start: int = 0, end: int | None = None, *, size: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        fill = self._fill
        if fill is None:
            raise ValueError("reader is closed")
        pos = start
        _span(start, end, None)
        fill.advance(self, pos)
        while True:
            changed = fill.changed  # taken before the checks, so no wake-up is missed
            if fill.error is not None and not fill.verified:
                raise fill.error
            stop = end if fill.total is None else (fill.total if end is None else min(end, fill.total))
            if stop is not None and pos >= stop:
                return
            if pos < fill.received:
                limit = fill.received if stop is None else min(fill.received, stop)
                data = await fill.read_at(pos, min(size, limit - pos))
                if fill.total is not None and pos + len(data) >= fill.total:
                    # The last bytes wait for the verdict, so a client never completes a bad blob.
                    # (Verified bytes are right even if the commit then fails: the temp file stays
                    # readable through its open handle until the last reader is done.)
                    while not (fill.verified or fill.finished):
                        await fill.changed.wait()
                if fill.error is not None and not fill.verified:
                    raise fill.error
                pos += len(data)
                fill.advance(self, pos)
                yield data
            elif fill.committed:
                return  # size was unknown and we are at the end
            else:
                await changed.wait()

    async def close(self) -> None:
        fill, self._fill = self._fill, None
        if fill is not None:
            self._release()
            await fill.detach(self)


class BypassReader(BlobReader):
    """Straight from upstream, nothing stored (cache full or disk low).  Can be read once."""

    def __init__(self, source: BlobSource, digest: Digest, registry: str) -> None:
        self.status = CacheStatus.BYPASS
        self.size = source.size
        self.path = None
        self._source = source
        self._digest = digest
        self._registry = registry
        self._used = False
        self._closed = False

    async def chunks(
        self, start: int = 0, end: int | None = None, *, size: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        if self._used:
            raise ValueError("a pass-through blob can be read only once")
        self._used = True
        start, end = _span(start, end, self.size)
        # Only a whole-blob read can be checked; a client reading a range checks nothing either.
        hasher = self._digest.hasher() if start == 0 and end in (None, self.size) else None
        pos = 0
        try:
            async for chunk in self._source.chunks:
                lo, hi = pos, pos + len(chunk)
                pos = hi
                if hasher is not None:
                    await asyncio.to_thread(hasher.update, chunk)
                if hi <= start:
                    continue
                if end is not None and lo >= end:
                    break
                yield chunk[max(0, start - lo) : len(chunk) if end is None else min(len(chunk), end - lo)]
                if end is not None and hi >= end and hasher is None:
                    break
        except (UpstreamError, ValueError):
            raise
        except Exception as exc:  # the upstream body iterator: aiohttp/OS errors mid-stream
            raise UpstreamError(self._registry, f"upstream stream failed: {type(exc).__name__}") from exc
        if hasher is not None:
            if self.size is not None and hasher.length != self.size:
                raise IntegrityError(
                    self._registry, f"{self._digest}: got {hasher.length} of {self.size} bytes"
                )
            if not hasher.matches(self._digest):
                raise IntegrityError(self._registry, f"{self._digest}: upstream sent bytes of another digest")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._source.close()
