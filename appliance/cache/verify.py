"""``appliance cache verify [--repair]``: re-hash every stored object and reconcile it with the index.

This is the one place that reads every file; start-up never does.  Without ``repair`` nothing is
changed.  With it: corrupt files and their rows go, rows without files go, unfinished rows are
finished, and files without rows are adopted (a file under data/ was renamed there only after
verification, and it is re-hashed here anyway), which rebuilds a lost index from the files.
Files or directories others could read (a cache written before modes were set) are reported, and
with ``repair`` made private again (files 0600, directories 0700, owned by the cache's user).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from appliance.cache.blobstore import MANIFEST_MAX, BlobKey, BlobStore, Kind
from appliance.cache.index import CacheIndex
from appliance.cache.index_records import Entry, EntryState

_PAGE = 500


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int  # files re-hashed
    rows: int  # index rows looked at
    corrupt: tuple[str, ...]  # files whose bytes do not hash to their name
    missing: tuple[str, ...]  # rows whose file is gone
    orphans: tuple[str, ...]  # files without a row
    unfinished: tuple[str, ...]  # rows a crash left pending/deleting
    strays: tuple[str, ...]  # files under data/ that are not cache objects at all
    repaired: bool
    loose: tuple[str, ...] = ()  # files/directories readable by other users (or not the cache's user's)

    @property
    def consistent(self) -> bool:
        return not (
            self.corrupt or self.missing or self.orphans or self.unfinished or self.strays or self.loose
        )

    def summary(self) -> str:
        state = "consistent" if self.consistent else ("repaired" if self.repaired else "INCONSISTENT")
        return (
            f"{state}: {self.checked} files checked, {self.rows} index rows; {len(self.corrupt)} corrupt,"
            f" {len(self.missing)} missing, {len(self.orphans)} orphaned, {len(self.unfinished)} unfinished,"
            f" {len(self.strays)} stray, {len(self.loose)} readable by others"
        )


def _name(key: BlobKey) -> str:
    return f"{key.registry} {key.kind} {key.digest}"


def sniff_media_type(body: bytes) -> str | None:
    """The ``mediaType`` a manifest declares, for manifests adopted without their Content-Type."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    media_type = doc.get("mediaType") if isinstance(doc, dict) else None
    return media_type if isinstance(media_type, str) else None


async def verify(
    store: BlobStore,
    index: CacheIndex,
    *,
    repair: bool = False,
    busy: Callable[[BlobKey], bool] = lambda _key: False,
) -> VerifyReport:
    """See the module docstring.  ``busy`` keys (being read or filled right now) are left alone."""
    missing: list[str] = []
    unfinished: list[str] = []
    rows = 0
    after: BlobKey | None = None
    while page := await index.entries_after(after, _PAGE):
        after = page[-1].key
        for entry in page:
            rows += 1
            if busy(entry.key):
                continue
            await _check_row(store, index, entry, repair, missing, unfinished)

    corrupt: list[str] = []
    orphans: list[str] = []
    checked = 0
    async for obj in store.scan():
        if busy(obj.key):
            continue
        checked += 1
        actual = await store.hash(obj.key, obj.key.digest.algorithm)
        if actual is None:
            continue  # deleted while we looked
        row = await index.get(obj.key, ready_only=False)
        if actual != obj.key.digest:
            corrupt.append(_name(obj.key))
            if repair:
                await store.delete(obj.key)
                if row is not None:
                    await index.remove([obj.key])
            continue
        if row is None:
            orphans.append(_name(obj.key))
            if repair:
                await _adopt(store, index, obj.key, obj.size, obj.mtime)

    strays = await store.strays(remove=repair)
    loose = await store.loose_modes(repair=repair)
    return VerifyReport(
        checked=checked,
        rows=rows,
        corrupt=tuple(corrupt),
        missing=tuple(missing),
        orphans=tuple(orphans),
        unfinished=tuple(unfinished),
        strays=tuple(strays),
        repaired=repair,
        loose=tuple(loose),
    )


async def _check_row(
    store: BlobStore, index: CacheIndex, entry: Entry, repair: bool, missing: list[str], unfinished: list[str]
) -> None:
    exists = await store.exists(entry.key)
    if entry.state is not EntryState.READY:
        unfinished.append(_name(entry.key))
        if repair:
            if entry.state is EntryState.PENDING and exists:
                await index.mark_ready_keys([entry.key])
            else:
                await store.delete(entry.key)
                await index.remove([entry.key])
    elif not exists:
        missing.append(_name(entry.key))
        if repair:
            await index.remove([entry.key])


async def _adopt(store: BlobStore, index: CacheIndex, key: BlobKey, size: int, mtime: float) -> None:
    media_type = None
    if key.kind is Kind.MANIFEST and size <= MANIFEST_MAX:
        reader = await store.open(key)
        if reader is not None:
            try:
                media_type = sniff_media_type(await reader.read_at(0, size))
            finally:
                await reader.close()
    await index.upsert_ready(Entry(key, size, media_type, mtime, mtime, False, EntryState.READY))
