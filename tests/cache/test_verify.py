"""verify / --repair: re-hash files, reconcile rows, rebuild a lost index from the files."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.cache import INDEX_FILE, BlobCache, BlobKey, Kind, ManifestCache
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_V2}).encode()


async def _populate(cache: BlobCache, n: int = 3) -> list[bytes]:
    blobs = [payload(50_000, seed) for seed in range(n)]
    for data in blobs:
        reader = await cache.open_or_fill(REG, REPO, sha256(data), Upstream(data).fetch)
        await read_all(reader.chunks())
        await reader.close()
    await cache.wait_fills()
    await ManifestCache(cache).put(REG, REPO, sha256(MANIFEST), DOCKER_V2, MANIFEST)
    return blobs


def _path(cache: BlobCache, data: bytes, kind: Kind = Kind.BLOB) -> Path:
    path = cache.store.local_path(BlobKey.of(REG, kind, sha256(data)))
    assert path is not None
    return path


async def test_healthy_cache_is_consistent(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    await _populate(cache)
    report = await cache.verify()
    assert report.consistent, report.summary()
    assert (report.checked, report.rows) == (4, 4)
    assert report.summary().startswith("consistent: 4 files checked")


async def test_corrupt_file_is_reported_then_removed_with_its_row(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    blobs = await _populate(cache)
    path = _path(cache, blobs[1])
    path.write_bytes(b"X" + path.read_bytes()[1:])  # same size: only re-hashing can tell

    report = await cache.verify()
    assert not report.consistent
    assert report.corrupt == (f"{REG} blob {sha256(blobs[1])}",)
    assert path.exists()

    repaired = await cache.verify(repair=True)
    assert repaired.repaired and len(repaired.corrupt) == 1
    assert not path.exists()
    assert await cache.open(REG, sha256(blobs[1])) is None
    assert (await cache.verify()).consistent
    assert (await cache.usage()).bytes == 2 * 50_000 + len(MANIFEST)


async def test_rows_without_files_are_reported_and_dropped(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    blobs = await _populate(cache)
    _path(cache, blobs[0]).unlink()
    report = await cache.verify()
    assert report.missing == (f"{REG} blob {sha256(blobs[0])}",)
    await cache.verify(repair=True)
    assert await cache.index.get(BlobKey.of(REG, Kind.BLOB, sha256(blobs[0]))) is None
    assert (await cache.verify()).consistent


async def test_lost_index_is_rebuilt_from_the_files(make_cache: CacheFactory, tmp_path: Path) -> None:
    cache = await make_cache()
    blobs = await _populate(cache)
    await cache.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "cache" / (INDEX_FILE + suffix)).unlink(missing_ok=True)
    (tmp_path / "cache" / "data" / "blob" / "junk.txt").write_text("not a cache object")

    again = await make_cache()
    assert await again.open(REG, sha256(blobs[0])) is None
    report = await again.verify()
    assert len(report.orphans) == 4 and len(report.strays) == 1
    await again.verify(repair=True)
    assert (await again.verify()).consistent
    for data in blobs:
        hit = await again.open(REG, sha256(data))
        assert hit is not None and await read_all(hit.chunks()) == data
        await hit.close()
    stored = await ManifestCache(again).get_by_digest(REG, sha256(MANIFEST))
    assert stored is not None and stored.media_type == DOCKER_V2 and stored.body == MANIFEST
    assert (await again.usage()).bytes == 3 * 50_000 + len(MANIFEST)
