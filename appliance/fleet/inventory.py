"""What the bucket holds, for ``appliance cache ls --fleet`` and ``appliance cache verify --fleet``.

The bucket has no index: ``inventory`` lists it (blobs, manifests, multipart uploads in progress,
leases) and groups the objects by the repositories the link markers name
(``links/<registry>/<repository>/<alg>/<hex>``, see ``tier``).  ``verify_bucket`` re-hashes every
blob and manifest and reports the ones whose bytes do not match their name; with ``repair`` it
deletes those, each only if its ETag is still the one that was hashed (a replica publishing the
right bytes meanwhile is never undone).  Neither needs a running engine: the bucket is shared.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from appliance.cache.blobstore import Kind
from appliance.cache.verify import VerifyReport
from appliance.digests import parse_digest
from appliance.fleet.bucket import Bucket, BucketError, ObjectInfo, PreconditionFailed
from appliance.fleet.store import object_name, parse_object_name

_LINKS = "links/"


@dataclass(frozen=True, slots=True)
class SharedRepository:
    """A repository some replica's upstream vouched for, and its objects the bucket holds."""

    registry: str
    repository: str
    objects: int
    size: int
    last_modified: float


@dataclass(frozen=True, slots=True)
class SharedInventory:
    blobs: int
    blob_bytes: int
    manifests: int
    manifest_bytes: int
    uploads: int  # multipart uploads in progress (fills, or ones a killed replica left)
    leases: int
    repositories: tuple[SharedRepository, ...]

    def summary(self) -> str:
        return (
            f"{self.blobs} blobs ({self.blob_bytes} bytes), {self.manifests} manifests "
            f"({self.manifest_bytes} bytes), {self.uploads} uploads in progress, {self.leases} leases"
        )


def _link(name: str) -> tuple[str, str, str] | None:
    """(registry, repository, object name) of a link marker, or None."""
    rest = name.removeprefix(_LINKS)
    parts = rest.split("/")
    if len(parts) < 4:
        return None
    registry, algorithm, hex_part = parts[0], parts[-2], parts[-1]
    try:
        digest = parse_digest(f"{algorithm}:{hex_part}")
    except ValueError:
        return None
    return registry, "/".join(parts[1:-2]), f"{digest.algorithm}/{digest.hex}"


async def inventory(bucket: Bucket) -> SharedInventory:
    objects: dict[str, ObjectInfo] = {}  # "<alg>/<hex>" -> the blob or manifest
    counts = {Kind.BLOB: [0, 0], Kind.MANIFEST: [0, 0]}
    for folder in ("blobs/", "manifests/"):
        async for info in bucket.list(folder):
            parsed = parse_object_name(info.name)
            if parsed is None:
                continue
            kind, digest = parsed
            counts[kind][0] += 1
            counts[kind][1] += info.size
            objects[f"{digest.algorithm}/{digest.hex}"] = info
    grouped: dict[tuple[str, str], list[ObjectInfo]] = {}
    async for info in bucket.list(_LINKS):
        link = _link(info.name)
        if link is not None and link[2] in objects:
            grouped.setdefault((link[0], link[1]), []).append(objects[link[2]])
    uploads = sum([1 async for _ in bucket.list_uploads("")])
    leases = sum([1 async for _ in bucket.list("leases/")])
    repositories = tuple(
        SharedRepository(
            registry,
            repository,
            len(infos),
            sum(info.size for info in infos),
            max(info.modified for info in infos),
        )
        for (registry, repository), infos in sorted(grouped.items())
    )
    return SharedInventory(
        counts[Kind.BLOB][0],
        counts[Kind.BLOB][1],
        counts[Kind.MANIFEST][0],
        counts[Kind.MANIFEST][1],
        uploads,
        leases,
        repositories,
    )


async def verify_bucket(bucket: Bucket, *, repair: bool = False) -> VerifyReport:
    """Re-hash every blob and manifest in the bucket (see the module docstring)."""
    checked = 0
    corrupt: list[str] = []
    strays: list[str] = []
    for folder in ("blobs/", "manifests/"):
        async for info in bucket.list(folder):
            parsed = parse_object_name(info.name)
            if parsed is None:
                strays.append(info.name)
                continue
            kind, digest = parsed
            hasher = digest.hasher()
            try:
                stream = await bucket.open(object_name(kind, digest))
            except BucketError as exc:
                if exc.status == 404:
                    continue  # deleted while we looked (the janitor)
                raise
            async for chunk in stream.chunks(1024 * 1024):
                await asyncio.to_thread(hasher.update, chunk)
            checked += 1
            if stream.info.etag != info.etag:
                continue  # replaced while we looked: a later run checks the new one
            if hasher.matches(digest) and hasher.length == info.size:
                continue
            corrupt.append(f"{kind} {digest}")
            if repair:
                try:
                    await bucket.delete(info.name, if_match=info.etag)
                except PreconditionFailed:
                    pass
    return VerifyReport(
        checked=checked,
        rows=0,
        corrupt=tuple(corrupt),
        missing=(),
        orphans=(),
        unfinished=(),
        strays=tuple(strays),
        repaired=repair,
    )
