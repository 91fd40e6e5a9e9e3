"""Streaming blob bodies: Range parsing, a shared memory budget, read-ahead.

Pure helpers and one small async combinator; no knowledge of registries or the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

from appliance.errors import ErrorCode, RegistryError

# Blob bytes held in memory for all streamed responses together (each holds about 3 reads: the one
# being written, its encrypted copy, and the next one being read).
STREAM_BUDGET = 16 * 1024 * 1024
MIN_STREAM_CHUNK = 32 * 1024
MAX_STREAM_CHUNK = 1024 * 1024
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


async def read_ahead(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield ``chunks`` while the next one is already being read."""
    iterator = aiter(chunks)
    pending: asyncio.Future[bytes] = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            try:
                chunk = await pending
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(anext(iterator))
            yield chunk
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
