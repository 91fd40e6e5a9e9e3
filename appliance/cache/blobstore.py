"""Where cached bytes live: the ``BlobStore`` interface, the keys it stores under, and its records.

The interface is deliberately small (temp object, commit, read at an offset, delete, scan) so that a
later S3-compatible store can implement it: a fill would still spool to a local temp file that
readers follow, and ``commit`` would upload it instead of renaming it.  The filesystem store is
``filestore.FileBlobStore``.
"""

from __future__ import annotations

import abc
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from appliance.digests import Algorithm, Digest, parse_digest

READ_CHUNK = 256 * 1024
# Manifests are held in memory whole, so they are capped (distribution uses 4 MiB too).
MANIFEST_MAX = 4 * 1024 * 1024
# Registry names end up in paths: a host name with an optional port, nothing that can climb out.
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$")


class Kind(StrEnum):
    BLOB = "blob"
    MANIFEST = "manifest"


def check_registry(registry: str) -> str:
    if not _REGISTRY_RE.fullmatch(registry) or ".." in registry:
        raise ValueError(f"invalid registry name {registry!r}")
    return registry


@dataclass(frozen=True, slots=True)
class BlobKey:
    """Identity of a stored object.  Blobs and manifests are separate namespaces of one registry."""

    registry: str
    kind: Kind
    digest: Digest

    @classmethod
    def of(cls, registry: str, kind: Kind, digest: str | Digest) -> BlobKey:
        parsed = digest if isinstance(digest, Digest) else parse_digest(digest)
        return cls(check_registry(registry), kind, parsed)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One committed object found by a scan."""

    key: BlobKey
    size: int
    mtime: float


class ObjectReader(abc.ABC):
    """An open committed object: reads keep working after the object is deleted."""

    size: int
    path: Path | None

    @abc.abstractmethod
    async def read_at(self, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class TempBlob(abc.ABC):
    """An object being written.  Readers may ``read_at`` bytes already written while it grows."""

    @abc.abstractmethod
    async def write(self, data: bytes, also: Callable[[bytes], object] | None = None) -> None:
        """Append ``data``; ``also(data)`` runs off the event loop with the write (the digest).

        One thread hop per chunk for both instead of two: at ~2000 chunks per 256 MiB the hops
        themselves were a visible share of a cold pull's CPU.
        """

    @abc.abstractmethod
    async def read_at(self, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    async def commit(self) -> None:
        """Make the bytes durable and visible under the key, atomically."""

    @abc.abstractmethod
    async def discard(self) -> None:
        """Remove the temp object; later ``read_at`` calls may still succeed or fail."""

    @abc.abstractmethod
    async def release(self) -> None:
        """Free handles; called once nobody reads the temp object any more."""


class BlobStore(abc.ABC):
    """The bytes of cached objects, addressed by ``BlobKey``.  All methods are off-loop safe."""

    @abc.abstractmethod
    async def start(self) -> int:
        """Prepare the store and sweep leftovers of fills interrupted by a crash; returns how many."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def create_temp(self, key: BlobKey) -> TempBlob: ...

    @abc.abstractmethod
    async def open(self, key: BlobKey) -> ObjectReader | None:
        """The committed object, or None when it is not there."""

    @abc.abstractmethod
    async def exists(self, key: BlobKey) -> bool: ...

    @abc.abstractmethod
    async def delete(self, key: BlobKey) -> None:
        """Remove the object; a missing object is not an error."""

    @abc.abstractmethod
    async def put_small(self, key: BlobKey, data: bytes) -> None:
        """Write a small object (a manifest) in one go, with the same commit rules as a fill."""

    @abc.abstractmethod
    def scan(self) -> AsyncIterator[StoredObject]:
        """Every committed object; used by verify/repair only, never on a hot path."""

    @abc.abstractmethod
    async def hash(self, key: BlobKey, algorithm: Algorithm) -> Digest | None: ...

    @abc.abstractmethod
    async def free_space(self) -> int | None:
        """Bytes free for new objects, or None when the store has no such limit."""

    def local_path(self, key: BlobKey) -> Path | None:
        """A local file with the object's bytes (for sendfile), when the store has one."""
        return None

    async def strays(self, *, remove: bool) -> list[str]:
        """Objects whose names are not keys (never written by the cache); verify reports them."""
        return []

    async def loose_modes(self, *, repair: bool) -> list[str]:
        """Files and directories others could read (verify); ``repair`` makes them private."""
        return []
