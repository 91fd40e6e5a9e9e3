"""kill -9 during fills leaves nothing servable-but-wrong, and the next start is consistent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256

ROOT = Path(__file__).resolve().parents[2]

# A child that fills blobs from slow generator sources and says how far it got.
CHILD = textwrap.dedent(
    """
    import asyncio, hashlib, sys
    from pathlib import Path
    from appliance.cache import BlobCache, BlobSource
    from appliance.config.model import CacheConfig

    directory, size, count, delay = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

    def blob(seed):
        block = hashlib.sha512(str(seed).encode()).digest()
        return (block * (size // len(block) + 1))[:size]

    async def body(data):
        for offset in range(0, len(data), 65536):
            yield data[offset:offset + 65536]
            await asyncio.sleep(delay)

    def progress(p):
        if p.done:
            print("PROGRESS", p.done, flush=True)

    async def main():
        cache = BlobCache.on_disk(
            directory, CacheConfig(max_size=1 << 40, inactive=1e9, min_free_disk=0), on_progress=progress
        )
        await cache.start()
        for seed in range(count):
            data = blob(seed)
            async def fetch(data=data):
                async def close():
                    pass
                return BlobSource(len(data), body(data), close)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            reader = await cache.open_or_fill("registry.example", "library/alpine", digest, fetch)
            async for _ in reader.chunks():
                pass
            await reader.close()
            # A reader completes once the bytes are verified; the commit may still be under way.
            await cache.wait_fills()
            print("DONE", seed, flush=True)
        await cache.close()

    asyncio.run(main())
    """
)


def _run_and_kill(
    directory: Path, size: int, count: int, delay: float, kill_after_lines: int, then_wait: float = 0.0
) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(size), str(count), str(delay)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            seen.append(line.strip())
            if len(seen) >= kill_after_lines:
                break
        time.sleep(then_wait)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return seen


async def test_kill_9_half_way_through_a_fill_then_restart_is_consistent_and_refills(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    directory = tmp_path / "cache"
    size = 8 * 1024 * 1024
    seen = await asyncio.to_thread(_run_and_kill, directory, size, 1, 0.02, 3)
    assert seen[-1].startswith("PROGRESS") and 0 < int(seen[-1].split()[1]) < size
    assert len(os.listdir(directory / "tmp")) == 1  # the interrupted fill's temp file

    cache = await make_cache(directory=directory)
    assert cache.swept == 1
    assert os.listdir(directory / "tmp") == []
    report = await cache.verify()
    assert report.consistent, report.summary()
    assert report.rows == 0

    data = payload(size, 0)  # the same bytes the child was fetching
    up = Upstream(data)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), up.fetch)
    assert await read_all(reader.chunks()) == data
    await reader.close()
    await cache.wait_fills()
    hit = await cache.open(REG, sha256(data))
    assert hit is not None
    await hit.close()


async def test_kill_9_at_assorted_moments_never_leaves_a_wrong_entry(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    directory = tmp_path / "cache"
    size = 200_000  # four chunks: commits happen often, so kills land around them too
    for kill_after, then_wait in ((3, 0.0), (6, 0.002), (9, 0.005), (12, 0.009)):
        seen = await asyncio.to_thread(_run_and_kill, directory, size, 50, 0.0005, kill_after, then_wait)
        assert any(line.startswith("DONE") for line in seen)
        cache = await make_cache(directory=directory)
        report = await cache.verify()
        assert report.consistent, report.summary()
        assert report.rows >= sum(line.startswith("DONE") for line in seen)
        for listing in await cache.list_images():
            for blob in listing.blobs:
                hit = await cache.open(REG, blob.digest)
                assert hit is not None
                assert sha256(await read_all(hit.chunks())) == blob.digest
                await hit.close()
        await cache.close()
