"""Cached content is private to the engine's user: files 0600, directories 0700 (issue 15, item 7).

Real files and real permission bits: what a fill, a manifest and the index leave on disk, what a
start tightens, and what ``verify --repair`` fixes in a cache written with looser modes.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from appliance.cache import ManifestCache
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256

MEDIA = "application/vnd.oci.image.manifest.v1+json"


def modes(root: Path) -> dict[str, int]:
    """Every path under ``root`` (itself as ".") -> its permission bits."""
    found = {".": stat.S_IMODE(os.lstat(root).st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def shared(root: Path) -> dict[str, str]:
    return {path: oct(mode) for path, mode in modes(root).items() if mode & 0o077}


async def _populate(make_cache: CacheFactory, root: Path, *, stop: bool = True) -> None:
    cache = await make_cache(directory=root)
    data = payload(300 * 1024, seed=7)
    async with await cache.open_or_fill(REG, REPO, sha256(data), Upstream(data).fetch) as reader:
        assert await read_all(reader.chunks()) == data
    await cache.wait_fills()
    body = json.dumps({"schemaVersion": 2, "mediaType": MEDIA}).encode()
    assert await ManifestCache(cache).put(REG, REPO, sha256(body), MEDIA, body, tag="1", accept_class="oci")
    if stop:
        await cache.close()  # as a stopped engine leaves it


async def test_everything_the_cache_writes_is_private_to_its_user(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    old = os.umask(0o022)  # the usual umask: files 0644 and directories 0755 unless the cache says
    try:
        root = tmp_path / "deep" / "cache"
        await _populate(make_cache, root, stop=False)  # running: the index has its -wal and -shm
    finally:
        os.umask(old)

    found = modes(root)
    assert {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "data", "tmp"} <= set(found)
    assert any(p.startswith("data/blob/") and len(Path(p).parts) == 6 for p in found)  # a blob file
    assert any(p.startswith("data/manifest/") and len(Path(p).parts) == 6 for p in found)
    assert shared(root) == {}
    assert stat.S_IMODE(os.stat(tmp_path / "deep").st_mode) == 0o700  # parents it created too


async def test_a_start_makes_the_top_of_an_old_cache_private(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    for directory in (root, root / "data", root / "tmp"):
        directory.mkdir(mode=0o755, exist_ok=True)
        os.chmod(directory, 0o755)
    (root / "index.sqlite").touch(mode=0o644)
    os.chmod(root / "index.sqlite", 0o644)

    await make_cache(directory=root)

    for path in (root, root / "data", root / "tmp"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    assert stat.S_IMODE(os.stat(root / "index.sqlite").st_mode) == 0o600


async def test_verify_reports_what_others_can_read_and_repair_makes_it_private(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    await _populate(make_cache, root)
    for path in modes(root):  # what an older version left: 0644 files, 0755 directories
        full = root / path
        os.chmod(full, 0o755 if stat.S_ISDIR(os.lstat(full).st_mode) else 0o644)
    cache = await make_cache(directory=root)  # a start tightens the top only
    left = shared(root)
    assert left and "." not in left

    report = await cache.verify()
    assert not report.consistent
    assert set(left) <= set(report.loose)
    assert "readable by others" in report.summary()
    assert shared(root) == left  # without --repair nothing changes

    repaired = await cache.verify(repair=True)
    assert repaired.repaired and set(left) <= set(repaired.loose)
    assert shared(root) == {}
    assert (await cache.verify()).consistent


async def test_repair_as_root_hands_files_back_to_the_owner_of_the_cache(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    root = tmp_path / "cache"
    await _populate(make_cache, root)
    blob = next(p for p in (root / "data" / "blob").rglob("*") if p.is_file())
    os.chown(blob, 4242, 4242)  # written by some other user (a verify run under the wrong account)
    cache = await make_cache(directory=root)

    report = await cache.verify(repair=True)

    assert str(blob.relative_to(root)) in report.loose
    assert os.stat(blob).st_uid == os.stat(root).st_uid
