"""The records the cache index hands out: blob entries and their state, tag records, usage, listings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from appliance.cache.blobstore import BlobKey, Kind


class EntryState(StrEnum):
    """Where a row is in its life; index.py's docstring says how start-up finishes each one."""

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
