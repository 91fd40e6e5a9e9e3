"""The cache index's queries: blob rows and their states, refs, purge, pins, tags and listings.

Each is a plain blocking function of an open connection; ``CacheIndex`` runs them on its thread.
Writes that touch more than one row run in one ``transaction`` so a crash leaves all or nothing.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from appliance.cache.blobstore import BlobKey, Kind
from appliance.cache.index_db import transaction
from appliance.cache.index_records import (
    BlobListing,
    Entry,
    EntryState,
    IndexTotals,
    RegistryUsage,
    RepositoryListing,
    TagRecord,
)
from appliance.digests import parse_digest

_ENTRY_COLUMNS = "registry, kind, digest, size, media_type, created, last_access, pinned, state"
# Recomputes blobs.pinned from the pins of every repository that references the blob.
_PINNED_EXPR = (
    "EXISTS (SELECT 1 FROM refs r JOIN pins p ON p.registry = r.registry AND p.repository = r.repository"
    " WHERE r.registry = blobs.registry AND r.digest = blobs.digest)"
)


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


# -- entries -----------------------------------------------------------------------------------


def get_entry(db: sqlite3.Connection, key: BlobKey, ready_only: bool) -> Entry | None:
    sql = f"SELECT {_ENTRY_COLUMNS} FROM blobs WHERE registry = ? AND kind = ? AND digest = ?"
    if ready_only:
        sql += " AND state = 'ready'"
    row = db.execute(sql, _key_params(key)).fetchone()
    return None if row is None else _entry(row)


def touch(db: sqlite3.Connection, key: BlobKey, now: float) -> None:
    db.execute(
        "UPDATE blobs SET last_access = ? WHERE registry = ? AND kind = ? AND digest = ?",
        (now, *_key_params(key)),
    )


def add_pending(db: sqlite3.Connection, key: BlobKey, size: int, media_type: str | None, now: float) -> None:
    db.execute(
        f"INSERT OR REPLACE INTO blobs ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 'pending')",
        (*_key_params(key), size, media_type, now, now),
    )


def mark_ready(db: sqlite3.Connection, key: BlobKey, repository: str | None) -> None:
    with transaction(db):
        if repository is not None:
            _insert_ref(db, key.registry, repository, str(key.digest))
        db.execute(
            f"UPDATE blobs SET state = 'ready', pinned = {_PINNED_EXPR}"
            " WHERE registry = ? AND kind = ? AND digest = ?",
            _key_params(key),
        )


def upsert_ready(db: sqlite3.Connection, entry: Entry) -> None:
    db.execute(
        f"INSERT OR REPLACE INTO blobs ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 'ready')",
        (*_key_params(entry.key), entry.size, entry.media_type, entry.created, entry.last_access),
    )


def add_ref(db: sqlite3.Connection, registry: str, repository: str, digest: str) -> None:
    with transaction(db):
        _insert_ref(db, registry, repository, digest)


def _insert_ref(db: sqlite3.Connection, registry: str, repository: str, digest: str) -> None:
    cur = db.execute("INSERT OR IGNORE INTO refs VALUES (?, ?, ?)", (registry, repository, digest))
    if cur.rowcount:
        db.execute(
            f"UPDATE blobs SET pinned = {_PINNED_EXPR} WHERE registry = ? AND digest = ?",
            (registry, digest),
        )


def unfinished(db: sqlite3.Connection) -> list[Entry]:
    rows = db.execute(f"SELECT {_ENTRY_COLUMNS} FROM blobs WHERE state != 'ready'").fetchall()
    return [_entry(r) for r in rows]


def set_state(db: sqlite3.Connection, keys: list[BlobKey], state: EntryState) -> None:
    with transaction(db):
        db.executemany(
            "UPDATE blobs SET state = ? WHERE registry = ? AND kind = ? AND digest = ?",
            [(str(state), *_key_params(k)) for k in keys],
        )


def remove(db: sqlite3.Connection, keys: list[BlobKey]) -> None:
    with transaction(db):
        for key in keys:
            db.execute("DELETE FROM blobs WHERE registry = ? AND kind = ? AND digest = ?", _key_params(key))
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
                for table in ("links", "passthrough_links"):
                    db.execute(
                        f"DELETE FROM {table} WHERE registry = ? AND digest = ?",
                        (key.registry, str(key.digest)),
                    )


def lru(db: sqlite3.Connection, limit: int, older_than: float | None) -> list[Entry]:
    sql = f"SELECT {_ENTRY_COLUMNS} FROM blobs WHERE state = 'ready' AND pinned = 0"
    params: tuple[object, ...] = ()
    if older_than is not None:
        sql += " AND last_access < ?"
        params = (older_than,)
    sql += " ORDER BY last_access LIMIT ?"
    return [_entry(r) for r in db.execute(sql, (*params, limit)).fetchall()]


def entries_after(db: sqlite3.Connection, after: BlobKey | None, limit: int) -> list[Entry]:
    sql = f"SELECT {_ENTRY_COLUMNS} FROM blobs"
    params: tuple[object, ...] = ()
    if after is not None:
        sql += " WHERE (registry, kind, digest) > (?, ?, ?)"
        params = _key_params(after)
    sql += " ORDER BY registry, kind, digest LIMIT ?"
    return [_entry(r) for r in db.execute(sql, (*params, limit)).fetchall()]


def totals(db: sqlite3.Connection) -> IndexTotals:
    rows = db.execute(
        "SELECT registry, COALESCE(SUM(size), 0), COUNT(*) FROM blobs"
        " WHERE state != 'deleting' GROUP BY registry ORDER BY registry"
    ).fetchall()
    regs = tuple(RegistryUsage(str(r), int(b), int(n)) for r, b, n in rows)
    return IndexTotals(sum(r.bytes for r in regs), sum(r.entries for r in regs), regs)


# -- links -------------------------------------------------------------------------------------


def is_linked(
    db: sqlite3.Connection, registry: str, repository: str, digest: str, credential: str = ""
) -> bool:
    """A link the engine's own credentials vouched for, or (``credential``) one that credential did."""
    row = db.execute(
        "SELECT 1 FROM links WHERE registry = ? AND repository = ? AND digest = ?",
        (registry, repository, digest),
    ).fetchone()
    if row is None and credential:
        row = db.execute(
            "SELECT 1 FROM passthrough_links WHERE registry = ? AND repository = ? AND digest = ?"
            " AND credential = ?",
            (registry, repository, digest, credential),
        ).fetchone()
    return row is not None


def add_links(
    db: sqlite3.Connection, registry: str, repository: str, digests: list[str], credential: str = ""
) -> None:
    """Links for ``digests``: for everyone, or (``credential``) for that passed-through credential."""
    with transaction(db):
        if credential:
            db.executemany(
                "INSERT OR IGNORE INTO passthrough_links VALUES (?, ?, ?, ?)",
                [(registry, repository, d, credential) for d in digests],
            )
        else:
            db.executemany(
                "INSERT OR IGNORE INTO links VALUES (?, ?, ?)", [(registry, repository, d) for d in digests]
            )


# -- purge and pins ----------------------------------------------------------------------------


def _where(cols: dict[str, str | None]) -> tuple[str, tuple[str, ...]]:
    parts = [f"{c} = ?" for c, v in cols.items() if v is not None]
    return (" WHERE " + " AND ".join(parts)) if parts else "", tuple(
        v for v in cols.values() if v is not None
    )


def select_purge(
    db: sqlite3.Connection, registry: str | None, repository: str | None, digest: str | None
) -> list[Entry]:
    with transaction(db):
        if repository is not None:
            ref_where, ref_params = _where({"registry": registry, "repository": repository, "digest": digest})
            touched = db.execute(
                f"SELECT DISTINCT registry, digest FROM refs{ref_where}", ref_params
            ).fetchall()
            db.execute(f"DELETE FROM refs{ref_where}", ref_params)
            db.execute(f"DELETE FROM links{ref_where}", ref_params)
            db.execute(f"DELETE FROM passthrough_links{ref_where}", ref_params)
            tag_where, tag_params = _where({"registry": registry, "repository": repository})
            db.execute(f"DELETE FROM tags{tag_where}", tag_params)
            victims: list[Entry] = []
            for reg, dig in touched:
                if db.execute("SELECT 1 FROM refs WHERE registry = ? AND digest = ?", (reg, dig)).fetchone():
                    continue
                rows = db.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM blobs WHERE registry = ? AND digest = ?", (reg, dig)
                ).fetchall()
                victims.extend(_entry(r) for r in rows)
        else:
            blob_where, params = _where({"registry": registry, "digest": digest})
            rows = db.execute(f"SELECT {_ENTRY_COLUMNS} FROM blobs{blob_where}", params).fetchall()
            victims = [_entry(r) for r in rows]
            db.execute(f"DELETE FROM refs{blob_where}", params)
            db.execute(f"DELETE FROM links{blob_where}", params)
            db.execute(f"DELETE FROM passthrough_links{blob_where}", params)
            db.execute(f"DELETE FROM tags{blob_where}", params)
        db.executemany(
            "UPDATE blobs SET state = 'deleting' WHERE registry = ? AND kind = ? AND digest = ?",
            [_key_params(v.key) for v in victims],
        )
        return victims


def pin(db: sqlite3.Connection, registry: str, repository: str, pinned: bool) -> int:
    with transaction(db):
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


# -- tags --------------------------------------------------------------------------------------


def put_tag(db: sqlite3.Connection, r: TagRecord) -> None:
    db.execute(
        "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (r.registry, r.repository, r.tag, r.accept_class, r.digest, r.media_type, r.size, r.fetched_at),
    )


def get_tag(
    db: sqlite3.Connection, registry: str, repository: str, tag: str, accept_class: str
) -> TagRecord | None:
    row = db.execute(
        "SELECT * FROM tags WHERE registry = ? AND repository = ? AND tag = ? AND accept_class = ?",
        (registry, repository, tag, accept_class),
    ).fetchone()
    return None if row is None else _tag(tuple(row))


def touch_tag(
    db: sqlite3.Connection, registry: str, repository: str, tag: str, accept_class: str, fetched_at: float
) -> bool:
    cur = db.execute(
        "UPDATE tags SET fetched_at = ?"
        " WHERE registry = ? AND repository = ? AND tag = ? AND accept_class = ?",
        (fetched_at, registry, repository, tag, accept_class),
    )
    return cur.rowcount > 0


# -- listing -----------------------------------------------------------------------------------


def list_repositories(db: sqlite3.Connection, registry: str | None) -> list[RepositoryListing]:
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
                    BlobListing(str(d), Kind(str(k)), int(s), float(a), bool(p)) for d, k, s, a, p in blobs
                ),
            )
        )
    return listings
