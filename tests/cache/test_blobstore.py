"""FileBlobStore: temp objects readable while growing, atomic commit, sweep, scan, names."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.cache import BlobKey, FileBlobStore, Kind
from appliance.digests import Algorithm
from tests.cache.helpers import REG, payload, sha256


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileBlobStore]:
    s = FileBlobStore(tmp_path / "store")
    await s.start()
    yield s
    await s.close()


async def test_temp_is_readable_while_growing_and_commit_moves_it_into_place(store: FileBlobStore) -> None:
    data = payload(300_000)
    key = BlobKey.of(REG, Kind.BLOB, sha256(data))
    temp = await store.create_temp(key)
    await temp.write(data[:100_000])
    assert await temp.read_at(50_000, 10) == data[50_000:50_010]
    assert not await store.exists(key)
    await temp.write(data[100_000:])
    await temp.commit()
    assert os.listdir(store.tmp_dir) == []
    assert await temp.read_at(299_990, 100) == data[299_990:]  # the open handle survives the rename
    await temp.release()
    reader = await store.open(key)
    assert reader is not None and reader.size == len(data)
    assert await reader.read_at(0, 5) == data[:5]
    await reader.close()
    assert (
        store.local_path(key)
        == store.data_dir / "blob" / REG / "sha256" / key.digest.hex[:2] / key.digest.hex
    )


async def test_discard_leaves_nothing(store: FileBlobStore) -> None:
    key = BlobKey.of(REG, Kind.BLOB, sha256(b"x"))
    temp = await store.create_temp(key)
    await temp.write(b"partial")
    await temp.discard()
    await temp.release()
    assert os.listdir(store.tmp_dir) == [] and not await store.exists(key)


async def test_start_sweeps_leftover_temp_files(tmp_path: Path) -> None:
    (tmp_path / "store" / "tmp").mkdir(parents=True)
    (tmp_path / "store" / "tmp" / "a.part").write_bytes(b"1")
    (tmp_path / "store" / "tmp" / "b.part").write_bytes(b"2")
    store = FileBlobStore(tmp_path / "store")
    assert await store.start() == 2
    assert os.listdir(store.tmp_dir) == []
    await store.close()


async def test_open_of_a_missing_object_is_none_and_delete_is_idempotent(store: FileBlobStore) -> None:
    key = BlobKey.of(REG, Kind.MANIFEST, sha256(b"m"))
    assert await store.open(key) is None
    await store.put_small(key, b"m")
    assert await store.exists(key)
    await store.delete(key)
    await store.delete(key)
    assert not await store.exists(key)


async def test_scan_and_hash_find_every_committed_object(store: FileBlobStore) -> None:
    keys = set()
    for seed in range(3):
        data = payload(1000, seed)
        key = BlobKey.of(REG, Kind.BLOB if seed else Kind.MANIFEST, sha256(data))
        await store.put_small(key, data)
        keys.add(key)
    found = [obj async for obj in store.scan()]
    assert {o.key for o in found} == keys and all(o.size == 1000 for o in found)
    for key in keys:
        assert await store.hash(key, Algorithm.SHA256) == key.digest
    assert await store.strays(remove=False) == []


@pytest.mark.parametrize("registry", ["../etc", "a/b", "", ".hidden", "host:port", "x..y", "host\n"])
def test_registry_names_that_could_escape_the_store_are_refused(registry: str) -> None:
    with pytest.raises(ValueError):
        BlobKey.of(registry, Kind.BLOB, sha256(b"x"))


def test_registry_with_port_is_a_valid_key() -> None:
    assert BlobKey.of("localhost:5000", Kind.BLOB, sha256(b"x")).registry == "localhost:5000"


async def test_free_space_reports_the_filesystem(store: FileBlobStore) -> None:
    free = await store.free_space()
    assert free is not None and free > 0
