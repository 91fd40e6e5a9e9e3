"""Test helpers for the cache: upstream sources written as async generators, payloads, digests."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from appliance.cache import BlobSource

REG = "registry.example"
REPO = "library/alpine"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    # Deterministic, incompressible-looking bytes without holding a random generator around.
    block = hashlib.sha512(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


@dataclass
class Upstream:
    """A fake upstream for one blob: counts fetches, can be slow, lie, or cut off."""

    data: bytes
    chunk: int = 64 * 1024
    delay: float = 0.0  # seconds between chunks
    size: int | str | None = "auto"  # "auto": len(data); None: unknown
    fail_after: int | None = None  # raise after this many bytes
    fail_before: BaseException | None = None  # fetch() raises this
    gate: asyncio.Event | None = None  # the body pauses after the first chunk until this is set
    fetches: int = 0
    closed: int = 0
    sent: int = 0
    first_sent: asyncio.Event = field(default_factory=asyncio.Event)

    async def fetch(self) -> BlobSource:
        self.fetches += 1
        await asyncio.sleep(0)
        if self.fail_before is not None:
            if self.gate is not None:
                await self.gate.wait()  # hold the failure until every waiter has joined
            raise self.fail_before
        size = len(self.data) if self.size == "auto" else self.size
        assert size is None or isinstance(size, int)
        return BlobSource(size=size, chunks=self._body(), close=self._close)

    async def _body(self) -> AsyncIterator[bytes]:
        for offset in range(0, len(self.data), self.chunk):
            if self.fail_after is not None and offset >= self.fail_after:
                raise ConnectionResetError("upstream went away")
            piece = self.data[offset : offset + self.chunk]
            self.sent += len(piece)
            yield piece
            self.first_sent.set()
            if self.gate is not None and offset == 0:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)

    async def _close(self) -> None:
        self.closed += 1


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


def tmp_files(cache_dir: Path) -> list[str]:
    return os.listdir(cache_dir / "tmp")
