"""The shared state of one fill in progress: what readers follow while ``FillManager`` runs it.

Readers follow a fill as it grows, each at its own pace: from the last chunks held in memory when
they keep up, from the temp object when they lag, woken by an ``asyncio.Event`` replaced on every
change.  ``fills`` starts and runs fills; ``readers`` reads them.  ``BlobSource`` is what the upstream
fetch hands a fill.

A fill whose storage fails (the disk filled up) goes on as a pass-through: the bytes already
written stay readable through the open temp file, and from then on every chunk is held in memory
until the slowest reader has it (the fill waits for readers beyond ``PASSTHROUGH_HELD``), so its
readers get the whole blob and nothing is committed.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from appliance.cache.blobstore import BlobKey, TempBlob
from appliance.errors import ApplianceError, UpstreamError

# Bytes a pass-through fill holds beyond its slowest reader before it waits for that reader.
PASSTHROUGH_HELD = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobSource:
    """What an upstream fetch hands to a fill."""

    size: int | None  # Content-Length if known
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]  # release the upstream response


FetchBlob = Callable[[], Awaitable[BlobSource]]


@dataclass(frozen=True, slots=True)
class FillProgress:
    registry: str
    repository: str
    digest: str
    done: int
    total: int | None
    rate: float  # bytes per second since the fill started
    readers: int
    started: float
    finished: bool = False
    error: str | None = None


class FillMode(Enum):
    STORE = "store"
    BYPASS = "bypass"


class Fill:
    """The shared state of one fill in progress (see the module docstring)."""

    def __init__(self, key: BlobKey, repository: str, expected_size: int | None) -> None:
        self.key = key
        self.repository = repository
        self.other_repositories: set[str] = set()  # of requests that joined; refs added at commit
        self.total = expected_size
        self.started = time.monotonic()
        self.written = 0  # bytes on storage
        self.received = 0  # bytes from upstream: on storage, or held in ``_recent`` until they are
        self.error: ApplianceError | None = None
        self.committed = False
        # Digest and length checked: the bytes are right, whatever becomes of the commit.
        self.verified = False
        self.finished = False
        self.readers = 0
        self.changed = asyncio.Event()
        self.ready: asyncio.Future[FillMode] = asyncio.get_running_loop().create_future()
        self.bypass_source: BlobSource | None = None
        self.starter_gone = False
        # Storage failed mid-way: the fill streams on from upstream without writing (module docstring).
        self.passthrough = False
        self.moved = asyncio.Event()  # a reader advanced (what a pass-through fill waits for)
        self._positions: dict[int, int] = {}  # id(reader) -> the next offset it needs
        self._temp: TempBlob | None = None
        self._released = False
        # Chunks received (offset, bytes): while storing, the last two (the one being written and
        # the one before); in pass-through, every one past ``written`` some reader still needs.
        self._recent: collections.deque[tuple[int, bytes]] = collections.deque()

    def store_in(self, temp: TempBlob) -> None:
        """The temp object the bytes go to; readers that fall behind read it back from there."""
        self._temp = temp

    def add_repository(self, repository: str) -> None:
        if repository != self.repository:
            self.other_repositories.add(repository)

    def notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def attach(self) -> None:
        self.readers += 1

    async def detach(self, reader: object | None = None) -> None:
        self.readers -= 1
        if reader is not None:
            self._positions.pop(id(reader), None)
            self._reader_moved()
        await self.release_if_idle()

    def advance(self, reader: object, position: int) -> None:
        """A reader's next offset; a pass-through fill drops what all its readers have."""
        self._positions[id(reader)] = position
        if self.passthrough:
            self._reader_moved()

    def _reader_moved(self) -> None:
        if self.passthrough:
            self._trim()
            moved, self.moved = self.moved, asyncio.Event()
            moved.set()

    def slowest(self) -> int:
        """The smallest offset a reader still needs (``received`` when nobody reads)."""
        return min(self._positions.values(), default=self.received)

    def held(self) -> int:
        """Bytes held in memory beyond the slowest reader (what a pass-through fill bounds)."""
        return self.received - max(self.slowest(), self.written)

    def lose_storage(self) -> list[tuple[int, bytes]]:
        """Switch to pass-through; returns the chunks held (the ones not on storage among them)."""
        self.passthrough = True
        return list(self._recent)

    def _trim(self) -> None:
        keep_from = max(self.written, self.slowest())
        while self._recent and self._recent[0][0] + len(self._recent[0][1]) <= keep_from:
            self._recent.popleft()

    async def release_if_idle(self) -> None:
        """Once finished and unread, drop the chunks held and close the temp object."""
        if self.finished and self.readers == 0:
            self._recent.clear()
        if self.finished and self.readers == 0 and self._temp is not None and not self._released:
            self._released = True
            await self._temp.release()

    def receive(self, chunk: bytes) -> None:
        """Bytes from upstream, before they reach storage: readers at the edge may take them.

        A reader keeping pace (the usual case: the client that asked) gets them without waiting
        for the disk write, a thread hop and a read back.  Bytes sent early are still upstream's
        bytes; the last ones of a blob are held back until the digest is verified (readers.py).
        Everything before the older of the two chunks held has landed (``_copy`` awaits each
        write before it starts the next), so any offset below ``received`` is readable.
        """
        self._recent.append((self.received, chunk))
        self.received += len(chunk)
        if self.passthrough:
            self._trim()
        elif len(self._recent) > 2:
            self._recent.popleft()
        self.notify()

    async def read_at(self, offset: int, length: int) -> bytes:
        if self._temp is None:
            raise RuntimeError("fill has no data yet")
        for start, chunk in self._recent:
            if start <= offset < start + len(chunk):
                skip = offset - start
                if skip == 0 and length >= len(chunk):
                    return chunk
                return chunk[skip : skip + length]
        if offset >= self.written:
            # Only a reader that joined a pass-through fill late can get here (the blob's middle
            # is neither stored nor held any more): a clean error, never wrong bytes.
            raise UpstreamError(self.key.registry, f"{self.key.digest}: fell behind a pass-through fill")
        # Never past what has landed: a write in progress may be visible only in part.
        return await self._temp.read_at(offset, min(length, self.written - offset))

    def progress(self) -> FillProgress:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return FillProgress(
            registry=self.key.registry,
            repository=self.repository,
            digest=str(self.key.digest),
            done=self.received if self.passthrough else self.written,
            total=self.total,
            rate=self.written / elapsed,
            readers=self.readers,
            started=self.started,
            finished=self.finished,
            error=None if self.error is None else str(self.error),
        )
