"""What one janitor run removes from the bucket, decided from what it read (no I/O here).

Inputs are the bucket listing, the replicas' access reports merged (digest -> last access), the
lease objects as read, the multipart uploads in progress, ``fleet.max_size`` and the time.  The plan:

* **evictions**: fleet-wide LRU over shared objects (``blobs/`` and ``manifests/``).  Nothing is
  evicted until the bucket passes the high watermark; then the least recently used go until it is
  at or under the low watermark (the gap keeps the janitor from deleting a blob per run at the cap).
  An object's last use is the newest of its access reports and its own write time.  Never evicted:
  an object under a live lease (someone is filling or following it), or used within ``recent``
  seconds (a pull in progress may still ask for it through a replica's L1 miss).  When what is left
  cannot get under the low watermark, the plan evicts what it may and says so (``short``).
* **orphaned uploads**: a multipart upload older than ``orphan_after`` (several lease TTLs: a live
  fill renews its lease every TTL/3 and its upload is never that old without one) whose object has
  no live lease.  A replica killed mid-fill leaves exactly this.
* **dead leases**: a lease expired for longer than ``dead_after`` past its expiry (its owner stopped
  renewing long ago; another replica would have taken it over had anyone still wanted it), or an
  object under ``leases/`` that is not a lease record and is as old.

``expires`` is the owner's wall clock: replicas agree within seconds (NTP), far inside these margins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from appliance.fleet.bucket import ObjectInfo, Upload
from appliance.fleet.leases import LeaseRecord

# Folders whose objects are content-addressed copies a replica can fetch again: the evictable ones.
SHARED_FOLDERS = ("blobs/", "manifests/")
LEASES_FOLDER = "leases/"


@dataclass(frozen=True, slots=True)
class Policy:
    """When and how far the janitor evicts, and how old leftovers must be before it removes them."""

    max_size: int  # bytes; 0 = unbounded (never evict)
    high: float = 0.90  # start evicting above this fraction of max_size
    low: float = 0.80  # evict down to this fraction
    recent: float = 600.0  # seconds: an object used this recently is never evicted
    orphan_after: float = 120.0  # seconds: an upload older than this without a live lease is orphaned
    dead_after: float = 60.0  # seconds past a lease's expiry before the janitor deletes it

    @classmethod
    def for_fleet(cls, max_size: int, lease_ttl: float) -> Policy:
        """Margins from the lease TTL: an upload 4 TTLs old has missed 12 renewals of its lease."""
        return cls(max_size=max_size, orphan_after=4 * lease_ttl, dead_after=2 * lease_ttl)

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high <= 1:
            raise ValueError(f"watermarks need 0 < low <= high <= 1 (low={self.low}, high={self.high})")
        if self.max_size < 0:
            raise ValueError("max_size must not be negative")


@dataclass(frozen=True, slots=True)
class LeaseSeen:
    """A lease object as the janitor read it: ``record`` None when it was not a lease record."""

    name: str
    etag: str
    modified: float
    record: LeaseRecord | None


@dataclass(frozen=True, slots=True)
class Plan:
    """One run's removals, and the numbers the status reports."""

    evict: tuple[ObjectInfo, ...]
    abort: tuple[Upload, ...]
    dead_leases: tuple[LeaseSeen, ...]
    bucket_bytes: int  # before the run
    after_bytes: int  # once the evictions are done
    short: bool  # over the low watermark even after evicting all it may (leased or recently used)


def lease_for(name: str) -> str | None:
    """The lease guarding a shared object: ``blobs/sha256/<hex>`` -> ``leases/blob/sha256/<hex>.json``."""
    for folder, kind in (("blobs/", "blob"), ("manifests/", "manifest")):
        if name.startswith(folder):
            return f"{LEASES_FOLDER}{kind}/{name.removeprefix(folder)}.json"
    return None


def digest_of_name(name: str) -> str | None:
    """``blobs/sha256/<hex>`` -> ``sha256:<hex>`` (the key access reports use), or None."""
    for folder in SHARED_FOLDERS:
        if name.startswith(folder):
            algorithm, _, hexpart = name.removeprefix(folder).partition("/")
            if algorithm and hexpart and "/" not in hexpart:
                return f"{algorithm}:{hexpart}"
    return None


def merge_reports(reports: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Digest -> the latest access any replica reported."""
    merged: dict[str, float] = {}
    for report in reports:
        for digest, when in report.items():
            if when > merged.get(digest, float("-inf")):
                merged[digest] = when
    return merged


def live_lease(lease: LeaseSeen, now: float, policy: Policy) -> bool:
    """A lease someone may still act under: unexpired, or too recently expired to call dead."""
    if lease.record is None:
        return now - lease.modified <= policy.dead_after
    return now <= lease.record.expires + policy.dead_after


def plan(
    objects: Iterable[ObjectInfo],
    accesses: Mapping[str, float],
    leases: Iterable[LeaseSeen],
    uploads: Iterable[Upload],
    policy: Policy,
    now: float,
) -> Plan:
    listing = list(objects)
    seen = list(leases)
    live = {lease.name for lease in seen if live_lease(lease, now, policy)}
    total = sum(info.size for info in listing)

    evict: list[ObjectInfo] = []
    after = total
    short = False
    if policy.max_size and total > policy.high * policy.max_size:
        target = policy.low * policy.max_size

        def last_use(info: ObjectInfo) -> float:
            digest = digest_of_name(info.name)
            reported = accesses.get(digest, 0.0) if digest is not None else 0.0
            return max(reported, info.modified)

        candidates = sorted(
            (info for info in listing if digest_of_name(info.name) is not None),
            key=lambda info: (last_use(info), info.name),
        )
        for info in candidates:
            if after <= target:
                break
            if now - last_use(info) < policy.recent or lease_for(info.name) in live:
                continue
            evict.append(info)
            after -= info.size
        short = after > target

    abort = tuple(
        upload
        for upload in uploads
        if now - upload.initiated > policy.orphan_after and lease_for(upload.name) not in live
    )
    dead = tuple(lease for lease in seen if lease.name not in live)
    return Plan(tuple(evict), abort, dead, total, after, short)
