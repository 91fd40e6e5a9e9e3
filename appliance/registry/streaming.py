"""Streaming blob bodies: Range parsing, a shared memory budget, read-ahead.

Pure helpers and one small async combinator; no knowledge of registries or the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator

from appliance.errors import ErrorCode, RegistryError

# Blob bytes held in memory for all streamed responses together (each holds about 3 reads: the one
# being written, its encrypted copy, and the next one being read; measured, rather more, since
# the TLS layer's buffers hold copies too).  A herd of 50 clients peaked at 119-130 MB of RSS
# with 8 MiB, and at 129-150 MB with 16 MiB.  A lone stream reads up to 2 MiB at a time: each read
# is a thread hop, and a warm 256 MiB pull cost the appliance 0.36-0.37 CPU-s with 2 MiB reads
# against 0.41-0.42 s with 1 MiB (two A/B runs of 13 interleaved pulls); two streams get 1.3 MiB.
STREAM_BUDGET = 8 * 1024 * 1024
MIN_STREAM_CHUNK = 32 * 1024
MAX_STREAM_CHUNK = 2 * 1024 * 1024
# Upstream bytes held per fill: the read being received, the chunk being written, and the one before
# it that readers may still take from memory.
FILL_BUDGET = 24 * 1024 * 1024
MIN_FILL_CHUNK = 256 * 1024
MAX_FILL_CHUNK = 1024 * 1024
# The most handed to the TLS layer in one write.  It encrypts a write whole before the first byte
# leaves, so a 1 MiB read written at once costs the client the encryption of all of it before it
# can start decrypting; in slices the two overlap (1 MiB blob hits 4.0 -> 3.4 ms to the last byte,
# cold pulls 1.31 -> 1.25x and 1.17 -> 1.11x a direct one), while reads stay large.
WRITE_SLICE = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int | None) -> tuple[int, int] | None:
    """A single ``bytes=a-b`` range -> (start, end exclusive); None for the whole body.

    Raises the 416 RegistryError for a range that starts past the end.
    """
    if not header or size is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # multi-range or junk: serve the whole body, which RFC 9110 allows
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        length = int(last)
        if length == 0:
            raise unsatisfiable(size)
        return max(0, size - length), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        raise unsatisfiable(size)
    return start, end


def unsatisfiable(size: int) -> RegistryError:
    return RegistryError(
        416,
        ErrorCode.BLOB_UNKNOWN,
        "requested range not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )


def stream_chunk_size(streams: int) -> int:
    """The read size for a blob stream when ``streams`` are running (this one included)."""
    share = STREAM_BUDGET // (3 * max(1, streams))
    return max(MIN_STREAM_CHUNK, min(MAX_STREAM_CHUNK, share))


def fill_chunk_size(fills: int) -> int:
    """The most one upstream body read may return for a fill when ``fills`` are running.

    Larger than what the TLS layer hands over at once (256 KiB): with 256 KiB reads, aiohttp split
    about half of its deliveries in two, and every chunk costs a thread hop and a wake-up (measured
    for a cold 256 MiB pull: 1536 chunks against 702, and 1.31x against 1.14x a direct pull).  With
    many fills at once it falls back to 256 KiB, so their buffers together stay within FILL_BUDGET.
    """
    share = FILL_BUDGET // (3 * max(1, fills))
    return max(MIN_FILL_CHUNK, min(MAX_FILL_CHUNK, share))


def write_slices(chunk: bytes) -> Iterator[bytes | memoryview]:
    """``chunk`` in pieces of at most WRITE_SLICE bytes, without copying it."""
    if len(chunk) <= WRITE_SLICE:
        yield chunk
        return
    view = memoryview(chunk)
    for offset in range(0, len(chunk), WRITE_SLICE):
        yield view[offset : offset + WRITE_SLICE]


async def _next_or_none(iterator: AsyncIterator[bytes]) -> bytes | None:
    # The end as a value, not as StopAsyncIteration stored in a task: that exception's traceback
    # holds read_ahead's frame, whose locals hold the task (and the last chunk, up to 1 MiB) in a
    # reference cycle that only the cyclic GC frees; under a herd of clients those chunks piled
    # up to tens of MB between collections.
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return None


async def read_ahead(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield ``chunks`` while the next one is already being read."""
    iterator = aiter(chunks)
    pending: asyncio.Future[bytes | None] = asyncio.ensure_future(_next_or_none(iterator))
    try:
        while True:
            chunk = await pending
            if chunk is None:
                return
            pending = asyncio.ensure_future(_next_or_none(iterator))
            yield chunk
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
