"""Range parsing, the stream memory budget and read-ahead."""

import asyncio
import gc
import types
from collections.abc import AsyncIterator

import pytest

from appliance.errors import RegistryError
from appliance.registry.streaming import (
    FILL_BUDGET,
    MAX_FILL_CHUNK,
    MAX_STREAM_CHUNK,
    MIN_FILL_CHUNK,
    MIN_STREAM_CHUNK,
    WRITE_SLICE,
    fill_chunk_size,
    parse_range,
    read_ahead,
    stream_chunk_size,
    write_slices,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 100)),
        ("bytes=100-", (100, 1000)),
        ("bytes=-10", (990, 1000)),
        ("bytes=900-5000", (900, 1000)),
        ("bytes=0-1,5-6", None),  # multi-range: the whole body, as RFC 9110 allows
        ("items=0-5", None),
    ],
)
def test_single_byte_ranges_become_half_open_spans(
    header: str | None, expected: tuple[int, int] | None
) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=2000-3000", "bytes=-0"])
def test_ranges_past_the_end_are_416_with_the_size(header: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_range(header, 1000)
    assert info.value.status == 416 and info.value.headers["Content-Range"] == "bytes */1000"


def test_read_size_shrinks_with_more_streams_within_bounds() -> None:
    sizes = [stream_chunk_size(n) for n in (1, 2, 8, 50, 500)]
    assert sizes[0] == MAX_STREAM_CHUNK and sizes[-1] == MIN_STREAM_CHUNK
    assert sizes == sorted(sizes, reverse=True)


def test_fill_reads_are_large_for_a_few_fills_and_fall_back_for_many() -> None:
    sizes = [fill_chunk_size(n) for n in (0, 1, 8, 9, 30, 1000)]
    assert sizes[:3] == [MAX_FILL_CHUNK] * 3
    assert sizes[-1] == MIN_FILL_CHUNK
    assert sizes == sorted(sizes, reverse=True)
    # Together they stay within the budget once the floor is not reached.
    assert all(3 * n * fill_chunk_size(n) <= FILL_BUDGET for n in (1, 4, 8, 9, 20))


async def _numbers(count: int, log: list[str]) -> AsyncIterator[bytes]:
    try:
        for n in range(count):
            log.append(f"read {n}")
            yield bytes([n])
    finally:
        log.append("closed")


async def test_read_ahead_keeps_the_next_read_in_flight_and_closes_the_source() -> None:
    log: list[str] = []
    seen = []
    async for chunk in read_ahead(_numbers(3, log)):
        seen.append(chunk)
        await asyncio.sleep(0)  # writing the chunk to the client yields to the loop
        log.append(f"wrote {chunk[0]}")
    assert seen == [b"\x00", b"\x01", b"\x02"]
    # The next read starts before the consumer handles the current chunk.
    assert log.index("read 1") < log.index("wrote 0")
    assert log.count("closed") == 1 and log.index("closed") > log.index("read 2")


async def test_read_ahead_stopped_early_cancels_the_pending_read_and_closes_the_source() -> None:
    log: list[str] = []
    stream = read_ahead(_numbers(10, log))
    assert await anext(stream) == b"\x00"
    await stream.aclose()
    assert "closed" in log and "read 9" not in log


async def test_read_ahead_run_to_the_end_leaves_no_reference_cycle_holding_its_chunks() -> None:
    # Freed by reference counting as soon as the stream ends, not at the next cyclic collection:
    # a herd of clients otherwise kept each stream's last chunk until the GC ran.
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        seen = [chunk async for chunk in read_ahead(_numbers(3, []))]
        await asyncio.sleep(0)
        gc.collect()
        left = [
            obj
            for obj in gc.garbage
            if isinstance(obj, types.FrameType) and obj.f_code.co_name in {"read_ahead", "_numbers"}
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert seen == [b"\x00", b"\x01", b"\x02"]
    assert left == [], f"read_ahead left {len(left)} frames in reference cycles"


def test_write_slices_cover_a_big_chunk_in_order_without_copying_it() -> None:
    chunk = bytes(range(256)) * (3 * WRITE_SLICE // 256 + 1)
    pieces = list(write_slices(chunk))
    assert len(pieces) == 4 and all(len(piece) <= WRITE_SLICE for piece in pieces)
    assert b"".join(pieces) == chunk
    assert all(isinstance(piece, memoryview) and piece.obj is chunk for piece in pieces)


def test_write_slices_leave_a_small_chunk_whole() -> None:
    chunk = b"x" * WRITE_SLICE
    assert list(write_slices(chunk)) == [chunk]
