"""The cache index's SQLite file: its schema, how a connection is opened, and transactions."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.cache import private

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
-- Which repositories the upstream vouched for a digest in (its manifest there listed it, or a
-- HEAD/GET there answered 200): a cached blob is served in a repository only through a link.
-- Created here on an existing index too, empty: the first request per pair then asks upstream.
-- A digest's links go when its last row does (eviction, purge).
CREATE TABLE IF NOT EXISTS links (
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (registry, repository, digest)
) WITHOUT ROWID;
-- Links vouched for by a client's own upstream credential, passed through (issue 17.5): they hold
-- for requests with that credential only, named by a keyed hash of it (never the credential; the
-- key lives in the engine's memory, so after a restart they hold for nobody).  Anyone else is served
-- the content only after their own upstream check answers 200, which writes their own link.
CREATE TABLE IF NOT EXISTS passthrough_links (
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    credential TEXT NOT NULL,
    PRIMARY KEY (registry, repository, digest, credential)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pins (
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (registry, repository)
) WITHOUT ROWID;
"""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the index at ``path``: WAL, autocommit, schema in place (blocking).

    The file is created 0600 before SQLite opens it: SQLite gives its ``-wal`` and ``-shm`` files
    the database file's mode, and the index names every cached repository.
    """
    private.make_dirs(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, private.FILE_MODE))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        private.tighten(name)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a process kill (only an OS crash can lose the last commits).
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.executescript(SCHEMA)
    return conn


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back if the body or the commit raises anything at all.

    A COMMIT that fails (a full disk: SQLITE_FULL) can leave the transaction open, and SQLite may
    already have rolled back a failed statement's transaction itself: the rollback runs only while
    one is open, so the connection is always usable afterwards and the original error is the one
    raised.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
