"""CacheIndex: SQLite in WAL mode on one thread, states, LRU order, refs, purge, tags, listing."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.cache import BlobKey, CacheIndex, Kind, TagRecord
from appliance.cache.index_records import EntryState
from tests.cache.helpers import REG, sha256


def key(n: int, kind: Kind = Kind.BLOB, registry: str = REG) -> BlobKey:
    return BlobKey.of(registry, kind, sha256(str(n).encode()))


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[CacheIndex]:
    idx = CacheIndex(tmp_path / "index.sqlite")
    await idx.open()
    yield idx
    await idx.close()


async def _ready(index: CacheIndex, k: BlobKey, size: int, at: float, repository: str = "repo") -> None:
    await index.add_pending(k, size, None, at)
    await index.mark_ready(k, repository)


async def test_uses_wal_and_one_dedicated_thread(index: CacheIndex, tmp_path: Path) -> None:
    threads = {await index._call(lambda: threading.current_thread().name) for _ in range(5)}
    assert len(threads) == 1 and threads.pop().startswith("cache-index")
    assert threading.current_thread().name == "MainThread"
    db = sqlite3.connect(tmp_path / "index.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_pending_rows_are_not_served_until_ready(index: CacheIndex) -> None:
    await index.add_pending(key(1), 10, None, 1.0)
    assert await index.get(key(1)) is None
    entry = await index.get(key(1), ready_only=False)
    assert entry is not None and entry.state is EntryState.PENDING
    assert [e.key for e in await index.unfinished()] == [key(1)]
    await index.mark_ready(key(1), "repo")
    assert await index.get(key(1)) is not None and await index.unfinished() == []


async def test_rows_survive_reopening(tmp_path: Path) -> None:
    first = CacheIndex(tmp_path / "i.sqlite")
    await first.open()
    assert first.created_fresh
    await _ready(first, key(1), 10, 1.0)
    await first.close()
    second = CacheIndex(tmp_path / "i.sqlite")
    await second.open()
    assert not second.created_fresh
    assert (await second.totals()).bytes == 10
    await second.close()


async def test_lru_orders_by_last_access_and_skips_pinned(index: CacheIndex) -> None:
    for n, at in ((1, 30.0), (2, 10.0), (3, 20.0)):
        await _ready(index, key(n), 1, at, repository=f"r{n}")
    await index.touch(key(3), 5.0)
    assert [e.key for e in await index.lru(10)] == [key(3), key(2), key(1)]
    assert await index.pin(REG, "r2", True) == 1
    assert [e.key for e in await index.lru(10)] == [key(3), key(1)]
    assert [e.key for e in await index.lru(10, older_than=25.0)] == [key(3)]


async def test_totals_per_registry(index: CacheIndex) -> None:
    await _ready(index, key(1), 100, 1.0)
    await _ready(index, key(2), 50, 1.0)
    await _ready(index, key(1, registry="other.example"), 7, 1.0)
    totals = await index.totals()
    assert (totals.bytes, totals.entries) == (157, 3)
    assert [(r.registry, r.bytes, r.entries) for r in totals.registries] == [
        ("other.example", 7, 1),
        (REG, 150, 2),
    ]


async def test_purge_by_digest_marks_entries_deleting_and_remove_forgets_them(index: CacheIndex) -> None:
    await _ready(index, key(1), 1, 1.0)
    await _ready(index, key(1, Kind.MANIFEST), 1, 1.0)
    await index.put_tag(TagRecord(REG, "repo", "latest", "a", str(key(1).digest), "m", 1, 1.0))
    victims = await index.select_purge(None, None, str(key(1).digest))
    assert {v.key for v in victims} == {key(1), key(1, Kind.MANIFEST)}
    assert await index.get(key(1)) is None  # deleting: not served any more
    assert await index.get_tag(REG, "repo", "latest", "a") is None
    await index.remove(v.key for v in victims)
    assert (await index.totals()).entries == 0


async def test_removing_a_manifest_drops_tags_pointing_at_it(index: CacheIndex) -> None:
    await _ready(index, key(1, Kind.MANIFEST), 1, 1.0)
    await index.put_tag(TagRecord(REG, "repo", "latest", "a", str(key(1).digest), "m", 1, 1.0))
    await index.remove([key(1, Kind.MANIFEST)])
    assert await index.get_tag(REG, "repo", "latest", "a") is None


async def test_listing_groups_tags_and_blobs_by_repository(index: CacheIndex) -> None:
    await _ready(index, key(1), 10, 1.0, repository="a")
    await _ready(index, key(2), 20, 2.0, repository="a")
    await index.add_ref(REG, "b", str(key(2).digest))
    await index.put_tag(TagRecord(REG, "a", "latest", "x", str(key(9).digest), "m", 3, 1.0))
    listing = {r.repository: r for r in await index.list_repositories()}
    assert set(listing) == {"a", "b"}
    assert listing["a"].size == 30 and listing["a"].last_access == 2.0
    assert [t.tag for t in listing["a"].tags] == ["latest"]
    assert [b.digest for b in listing["b"].blobs] == [str(key(2).digest)]
    assert await index.list_repositories("nowhere.example") == []


async def test_entries_after_pages_through_every_row(index: CacheIndex) -> None:
    for n in range(7):
        await _ready(index, key(n), 1, 1.0)
    seen: list[BlobKey] = []
    after = None
    while page := await index.entries_after(after, 3):
        seen.extend(e.key for e in page)
        after = page[-1].key
    assert sorted(seen, key=str) == sorted((key(n) for n in range(7)), key=str) and len(set(seen)) == 7


async def test_bookkeeping_queued_without_waiting_is_seen_by_every_later_call(index: CacheIndex) -> None:
    for n, at in ((1, 30.0), (2, 10.0)):
        await _ready(index, key(n), 1, at, repository=f"r{n}")
    index.touch_soon(key(1), 5.0)
    index.add_ref_soon(REG, "other", str(key(2).digest))
    # No await in between: the one worker thread takes calls in the order they were made.
    assert [e.key for e in await index.lru(10)] == [key(1), key(2)]
    listed = {r.repository: [b.digest for b in r.blobs] for r in await index.list_repositories(REG)}
    assert listed["other"] == [str(key(2).digest)]


async def test_bookkeeping_that_fails_is_logged_and_harms_nothing_else(
    index: CacheIndex, caplog: pytest.LogCaptureFixture
) -> None:
    await _ready(index, key(1), 1, 1.0)

    def broken(db: sqlite3.Connection, *args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with caplog.at_level("WARNING", logger="appliance.cache.storage_health"):
        index._record(broken)
        assert await index.get(key(1)) is not None  # the next call runs as usual
    assert "cache index: broken dropped (database or disk is full)" in caplog.text
    assert index.health.dropped_records == 1


async def test_bookkeeping_after_close_is_dropped_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    idx = CacheIndex(tmp_path / "index.sqlite")
    await idx.open()
    await _ready(idx, key(1), 10, 1.0, repository="r1")
    await idx.close()

    with caplog.at_level("DEBUG", logger="appliance.cache.index"):
        # A request finishing during shutdown: no exception, no complaint, and nothing written.
        idx.touch_soon(key(1), 99.0)
        idx.add_ref_soon(REG, "late", str(key(1).digest))
    assert caplog.records == []

    reopened = CacheIndex(tmp_path / "index.sqlite")
    await reopened.open()
    try:
        entry = await reopened.get(key(1))
        assert entry is not None and entry.last_access == 1.0
        assert [r.repository for r in await reopened.list_repositories(REG)] == ["r1"]
    finally:
        await reopened.close()
