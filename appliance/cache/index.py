"""The cache's metadata: an SQLite file (WAL) driven from one dedicated worker thread.

Every call hops to that thread, so the event loop never blocks on SQLite and the connection is only
ever used by the thread that opened it.  Nothing is loaded into memory at start: lookups go to the
database, which keeps start-up constant-time whatever the number of entries.

Rows carry a ``state`` so crashes leave a trail the next start can finish cheaply:

* ``pending``: written just before a verified temp file is renamed into place.  At start the row is
  promoted to ``ready`` if the file made it, dropped otherwise (no directory scan needed).
* ``ready``: servable.
* ``deleting``: written before a file is unlinked; at start the unlink is finished and the row dropped.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from appliance.cache.blobstore import BlobKey, Kind
from appliance.digests import parse_digest

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    registry TEXT NOT NULL,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT,
    created REAL NOT NULL,
    last_access REAL NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'ready',
    PRIMARY KEY (registry, kind, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_lru ON blobs (state, pinned, last_access);
CREATE TABLE IF NOT EXISTS refs (
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (registry, repository, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_digest ON refs (registry, digest);
CREATE TABLE IF NOT EXISTS tags (
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    accept_class TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    fetched_at REAL NOT NULL,
    PRIMARY KEY (registry, repository, tag, accept_class)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags (registry, digest);
CREATE TABLE IF NOT EXISTS pins (
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (registry, repository)
) WITHOUT ROWID;
"""

_ENTRY_COLUMNS = "registry, kind, digest, size, media_type, created, last_access, pinned, state"
# Recomputes blobs.pinned from the pins of every repository that references the blob.
_PINNED_EXPR = (
    "EXISTS (SELECT 1 FROM refs r JOIN pins p ON p.registry = r.registry AND p.repository = r.repository"
    " WHERE r.registry = blobs.registry AND r.digest = blobs.digest)"
)


class EntryState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    DELETING = "deleting"


@dataclass(frozen=True, slots=True)
class Entry:
    key: BlobKey
    size: int
    media_type: str | None
    created: float
    last_access: float
    pinned: bool
    state: EntryState


@dataclass(frozen=True, slots=True)
class TagRecord:
    registry: str
    repository: str
    tag: str
    accept_class: str
    digest: str
    media_type: str
    size: int
    fetched_at: float


@dataclass(frozen=True, slots=True)
class RegistryUsage:
    registry: str
    bytes: int
    entries: int


@dataclass(frozen=True, slots=True)
class IndexTotals:
    bytes: int
    entries: int
    registries: tuple[RegistryUsage, ...]


@dataclass(frozen=True, slots=True)
class BlobListing:
    digest: str
    kind: Kind
    size: int
    last_access: float
    pinned: bool


@dataclass(frozen=True, slots=True)
class RepositoryListing:
    """One repository as ``appliance cache ls`` shows it."""

    registry: str
    repository: str
    pinned: bool
    tags: tuple[TagRecord, ...]
    blobs: tuple[BlobListing, ...]

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs)

    @property
    def last_access(self) -> float:
        return max((b.last_access for b in self.blobs), default=0.0)


def _entry(row: Any) -> Entry:
    registry, kind, digest, size, media_type, created, last_access, pinned, state = tuple(row)
    return Entry(
        key=BlobKey(str(registry), Kind(str(kind)), parse_digest(str(digest))),
        size=int(size),
        media_type=None if media_type is None else str(media_type),
        created=float(created),
        last_access=float(last_access),
        pinned=bool(pinned),
        state=EntryState(str(state)),
    )


def _tag(row: Any) -> TagRecord:
    registry, repository, tag, accept_class, digest, media_type, size, fetched_at = row
    return TagRecord(
        str(registry),
        str(repository),
        str(tag),
        str(accept_class),
        str(digest),
        str(media_type),
        int(size),
        float(fetched_at),
    )


def _key_params(key: BlobKey) -> tuple[str, str, str]:
    return key.registry, str(key.kind), str(key.digest)


class CacheIndex:
    """Async facade over the SQLite index; one worker thread owns the connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cache-index")
        self._conn: sqlite3.Connection | None = None
        self.created_fresh = False  # the file did not exist: a lost index, repair may adopt files

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("cache index is not open")
        return self._conn

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        self.created_fresh = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process kill (only an OS crash can lose the last commits).
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # -- entries -------------------------------------------------------------------------------

    async def get(self, key: BlobKey, *, ready_only: bool = True) -> Entry | None:
        return await self._call(self._get, key, ready_only)

    def _get(self, key: BlobKey, ready_only: bool) -> Entry | None:
        sql = f"SELECT {_ENTRY_COLUMNS} FROM blobs WHERE registry = ? AND kind = ? AND digest = ?"
        if ready_only:
            sql += " AND state = 'ready'"
        row = self._db.execute(sql, _key_params(key)).fetchone()
        return None if row is None else _entry(row)

    async def touch(self, key: BlobKey, now: float) -> None:
        await self._call(self._touch, key, now)

    def _touch(self, key: BlobKey, now: float) -> None:
        self._db.execute(
            "UPDATE blobs SET last_access = ? WHERE registry = ? AND kind = ? AND digest = ?",
            (now, *_key_params(key)),
        )

    async def add_pending(self, key: BlobKey, size: int, media_type: str | None, now: float) -> None:
        """Record an object about to be renamed into place (see the module docstring)."""
        await self._call(self._add_pending, key, size, media_type, now)

    def _add_pending(self, key: BlobKey, size: int, media_type: str | None, now: float) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO blobs ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 'pending')",
            (*_key_params(key), size, media_type, now, now),
        )

    async def mark_ready(self, key: BlobKey, repository: str | None) -> None:
        await self._call(self._mark_ready, key, repository)

    def _mark_ready(self, key: BlobKey, repository: str | None) -> None:
        def run(db: sqlite3.Connection) -> None:
            if repository is not None:
                self._insert_ref(db, key.registry, repository, str(key.digest))
            db.execute(
                f"UPDATE blobs SET state = 'ready', pinned = {_PINNED_EXPR}"
                " WHERE registry = ? AND kind = ? AND digest = ?",
                _key_params(key),
            )

        self._transaction(run)

    async def upsert_ready(self, entry: Entry) -> None:
        """Adopt an object found on disk (verify --repair)."""
        await self._call(self._upsert_ready, entry)

    def _upsert_ready(self, entry: Entry) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO blobs ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 'ready')",
            (*_key_params(entry.key), entry.size, entry.media_type, entry.created, entry.last_access),
        )

    async def add_ref(self, registry: str, repository: str, digest: str) -> None:
        await self._call(self._add_ref, registry, repository, digest)

    def _add_ref(self, registry: str, repository: str, digest: str) -> None:
        self._transaction(lambda db: self._insert_ref(db, registry, repository, digest))

    @staticmethod
    def _insert_ref(db: sqlite3.Connection, registry: str, repository: str, digest: str) -> None:
        cur = db.execute("INSERT OR IGNORE INTO refs VALUES (?, ?, ?)", (registry, repository, digest))
        if cur.rowcount:
            db.execute(
                f"UPDATE blobs SET pinned = {_PINNED_EXPR} WHERE registry = ? AND digest = ?",
                (registry, digest),
            )

    async def unfinished(self) -> list[Entry]:
        """Rows a crash left ``pending`` or ``deleting``; few, so a list is fine."""
        return await self._call(self._unfinished)

    def _unfinished(self) -> list[Entry]:
        rows = self._db.execute(f"SELECT {_ENTRY_COLUMNS} FROM blobs WHERE state != 'ready'").fetchall()
        return [_entry(r) for r in rows]

    async def mark_deleting(self, keys: Iterable[BlobKey]) -> None:
        await self._call(self._set_state, list(keys), EntryState.DELETING)

    async def mark_ready_keys(self, keys: Iterable[BlobKey]) -> None:
        await self._call(self._set_state, list(keys), EntryState.READY)

    def _set_state(self, keys: list[BlobKey], state: EntryState) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE blobs SET state = ? WHERE registry = ? AND kind = ? AND digest = ?",
                [(str(state), *_key_params(k)) for k in keys],
            )

        self._transaction(run)

    async def remove(self, keys: Iterable[BlobKey]) -> None:
        """Drop rows (after their files are gone), and tag records pointing at removed manifests."""
        await self._call(self._remove, list(keys))

    def _remove(self, keys: list[BlobKey]) -> None:
        def run(db: sqlite3.Connection) -> None:
            for key in keys:
                db.execute(
                    "DELETE FROM blobs WHERE registry = ? AND kind = ? AND digest = ?", _key_params(key)
                )
                if key.kind is Kind.MANIFEST:
                    db.execute(
                        "DELETE FROM tags WHERE registry = ? AND digest = ?", (key.registry, str(key.digest))
                    )
                still = db.execute(
                    "SELECT 1 FROM blobs WHERE registry = ? AND digest = ?", (key.registry, str(key.digest))
                ).fetchone()
                if still is None:
                    db.execute(
                        "DELETE FROM refs WHERE registry = ? AND digest = ?", (key.registry, str(key.digest))
                    )

        self._transaction(run)

    async def lru(self, limit: int, *, older_than: float | None = None) -> list[Entry]:
        """Unpinned ready entries, least recently used first."""
        return await self._call(self._lru, limit, older_than)

    def _lru(self, limit: int, older_than: float | None) -> list[Entry]:
        sql = f"SELECT {_ENTRY_COLUMNS} FROM blobs WHERE state = 'ready' AND pinned = 0"
        params: tuple[object, ...] = ()
        if older_than is not None:
            sql += " AND last_access < ?"
            params = (older_than,)
        sql += " ORDER BY last_access LIMIT ?"
        return [_entry(r) for r in self._db.execute(sql, (*params, limit)).fetchall()]

    async def entries_after(self, after: BlobKey | None, limit: int) -> list[Entry]:
        """A page of all rows in key order (for verify), without holding them all in memory."""
        return await self._call(self._entries_after, after, limit)

    def _entries_after(self, after: BlobKey | None, limit: int) -> list[Entry]:
        sql = f"SELECT {_ENTRY_COLUMNS} FROM blobs"
        params: tuple[object, ...] = ()
        if after is not None:
            sql += " WHERE (registry, kind, digest) > (?, ?, ?)"
            params = _key_params(after)
        sql += " ORDER BY registry, kind, digest LIMIT ?"
        return [_entry(r) for r in self._db.execute(sql, (*params, limit)).fetchall()]

    async def totals(self) -> IndexTotals:
        return await self._call(self._totals)

    def _totals(self) -> IndexTotals:
        rows = self._db.execute(
            "SELECT registry, COALESCE(SUM(size), 0), COUNT(*) FROM blobs"
            " WHERE state != 'deleting' GROUP BY registry ORDER BY registry"
        ).fetchall()
        regs = tuple(RegistryUsage(str(r), int(b), int(n)) for r, b, n in rows)
        return IndexTotals(sum(r.bytes for r in regs), sum(r.entries for r in regs), regs)

    # -- purge and pins ------------------------------------------------------------------------

    async def select_purge(
        self, registry: str | None, repository: str | None, digest: str | None
    ) -> list[Entry]:
        """Forget refs/tags matched by the filter and mark the entries left unreferenced ``deleting``.

        With a repository, only blobs no other repository still references go; otherwise every
        entry matching registry/digest goes.  The caller unlinks the files, then calls ``remove``.
        """
        return await self._call(self._select_purge, registry, repository, digest)

    def _select_purge(self, registry: str | None, repository: str | None, digest: str | None) -> list[Entry]:
        def where(cols: dict[str, str | None]) -> tuple[str, tuple[str, ...]]:
            parts = [f"{c} = ?" for c, v in cols.items() if v is not None]
            return (" WHERE " + " AND ".join(parts)) if parts else "", tuple(
                v for v in cols.values() if v is not None
            )

        def run(db: sqlite3.Connection) -> list[Entry]:
            if repository is not None:
                ref_where, ref_params = where(
                    {"registry": registry, "repository": repository, "digest": digest}
                )
                touched = db.execute(
                    f"SELECT DISTINCT registry, digest FROM refs{ref_where}", ref_params
                ).fetchall()
                db.execute(f"DELETE FROM refs{ref_where}", ref_params)
                tag_where, tag_params = where({"registry": registry, "repository": repository})
                db.execute(f"DELETE FROM tags{tag_where}", tag_params)
                victims: list[Entry] = []
                for reg, dig in touched:
                    if db.execute(
                        "SELECT 1 FROM refs WHERE registry = ? AND digest = ?", (reg, dig)
                    ).fetchone():
                        continue
                    rows = db.execute(
                        f"SELECT {_ENTRY_COLUMNS} FROM blobs WHERE registry = ? AND digest = ?", (reg, dig)
                    ).fetchall()
                    victims.extend(_entry(r) for r in rows)
            else:
                blob_where, params = where({"registry": registry, "digest": digest})
                rows = db.execute(f"SELECT {_ENTRY_COLUMNS} FROM blobs{blob_where}", params).fetchall()
                victims = [_entry(r) for r in rows]
                db.execute(f"DELETE FROM refs{blob_where}", params)
                db.execute(f"DELETE FROM tags{blob_where}", params)
            db.executemany(
                "UPDATE blobs SET state = 'deleting' WHERE registry = ? AND kind = ? AND digest = ?",
                [_key_params(v.key) for v in victims],
            )
            return victims

        return self._transaction(run)

    async def pin(self, registry: str, repository: str, pinned: bool) -> int:
        """Pin or unpin a repository (also its future blobs); returns how many entries it covers."""
        return await self._call(self._pin, registry, repository, pinned)

    def _pin(self, registry: str, repository: str, pinned: bool) -> int:
        def run(db: sqlite3.Connection) -> int:
            if pinned:
                db.execute("INSERT OR IGNORE INTO pins VALUES (?, ?)", (registry, repository))
            else:
                db.execute("DELETE FROM pins WHERE registry = ? AND repository = ?", (registry, repository))
            cur = db.execute(
                f"UPDATE blobs SET pinned = {_PINNED_EXPR} WHERE registry = ? AND digest IN"
                " (SELECT digest FROM refs WHERE registry = ? AND repository = ?)",
                (registry, registry, repository),
            )
            return cur.rowcount

        return self._transaction(run)

    # -- tags ----------------------------------------------------------------------------------

    async def put_tag(self, record: TagRecord) -> None:
        await self._call(self._put_tag, record)

    def _put_tag(self, r: TagRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (r.registry, r.repository, r.tag, r.accept_class, r.digest, r.media_type, r.size, r.fetched_at),
        )

    async def get_tag(self, registry: str, repository: str, tag: str, accept_class: str) -> TagRecord | None:
        return await self._call(self._get_tag, registry, repository, tag, accept_class)

    def _get_tag(self, registry: str, repository: str, tag: str, accept_class: str) -> TagRecord | None:
        row = self._db.execute(
            "SELECT * FROM tags WHERE registry = ? AND repository = ? AND tag = ? AND accept_class = ?",
            (registry, repository, tag, accept_class),
        ).fetchone()
        return None if row is None else _tag(tuple(row))

    async def touch_tag(
        self, registry: str, repository: str, tag: str, accept_class: str, fetched_at: float
    ) -> bool:
        return await self._call(self._touch_tag, registry, repository, tag, accept_class, fetched_at)

    def _touch_tag(
        self, registry: str, repository: str, tag: str, accept_class: str, fetched_at: float
    ) -> bool:
        cur = self._db.execute(
            "UPDATE tags SET fetched_at = ?"
            " WHERE registry = ? AND repository = ? AND tag = ? AND accept_class = ?",
            (fetched_at, registry, repository, tag, accept_class),
        )
        return cur.rowcount > 0

    # -- listing -------------------------------------------------------------------------------

    async def list_repositories(self, registry: str | None = None) -> list[RepositoryListing]:
        return await self._call(self._list_repositories, registry)

    def _list_repositories(self, registry: str | None) -> list[RepositoryListing]:
        db = self._db
        flt, params = (" WHERE registry = ?", (registry,)) if registry is not None else ("", ())
        repos = db.execute(
            f"SELECT registry, repository FROM refs{flt} UNION SELECT registry, repository FROM tags{flt}"
            " ORDER BY 1, 2",
            params * 2,
        ).fetchall()
        pins = {(str(r), str(p)) for r, p in db.execute("SELECT registry, repository FROM pins")}
        listings: list[RepositoryListing] = []
        for reg, repo in repos:
            tags = db.execute(
                "SELECT * FROM tags WHERE registry = ? AND repository = ? ORDER BY tag, accept_class",
                (reg, repo),
            ).fetchall()
            blobs = db.execute(
                "SELECT b.digest, b.kind, b.size, b.last_access, b.pinned FROM refs r JOIN blobs b"
                " ON b.registry = r.registry AND b.digest = r.digest"
                " WHERE r.registry = ? AND r.repository = ? AND b.state = 'ready'"
                " ORDER BY b.last_access DESC",
                (reg, repo),
            ).fetchall()
            listings.append(
                RepositoryListing(
                    str(reg),
                    str(repo),
                    (str(reg), str(repo)) in pins,
                    tuple(_tag(tuple(t)) for t in tags),
                    tuple(
                        BlobListing(str(d), Kind(str(k)), int(s), float(a), bool(p))
                        for d, k, s, a, p in blobs
                    ),
                )
            )
        return listings
