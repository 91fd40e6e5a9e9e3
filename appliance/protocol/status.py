"""The ``status`` answer: version, uptime, listen addresses, the CA, and each registry's health."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from appliance.protocol.codec import Payload


class RegistryHealth(StrEnum):
    UNKNOWN = "unknown"  # no request since start
    OK = "ok"
    DEGRADED = "degraded"  # the most recent upstream outcome was an error
    RATE_LIMITED = "rate-limited"  # the registry told us to back off


@dataclass(frozen=True, slots=True)
class RateLimit(Payload):
    """What a registry last said about its pull quota (Docker Hub's ``ratelimit-*`` headers)."""

    limit: int | None = None
    remaining: int | None = None
    window: int | None = None  # seconds
    source: str | None = None
    blocked_until: float | None = None  # epoch seconds; set after a 429
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RegistryStatus(Payload):
    host: str
    aliases: tuple[str, ...] = ()
    scheme: str = "https"
    health: RegistryHealth = RegistryHealth.UNKNOWN
    requests: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_at: float | None = None
    last_ok_at: float | None = None
    rate_limit: RateLimit | None = None


class CacheDiskState(StrEnum):
    OK = "ok"
    LOW = "low"  # free space below cache.min_free_disk: new blobs are passed through, not stored
    FULL = "full"  # writes fail for lack of space: content is served, nothing new is stored


@dataclass(frozen=True, slots=True)
class CacheDisk(Payload):
    """The cache's filesystem: room left, and what failed for lack of it since start."""

    state: CacheDiskState = CacheDiskState.OK
    free: int | None = None  # bytes free at the last look, None if unknown
    min_free: int = 0  # the watermark (cache.min_free_disk)
    write_failures: int = 0  # writes (files or index) that failed
    dropped_records: int = 0  # index writes that only record use (access times), dropped
    passthrough_fills: int = 0  # fills that lost their storage mid-way and were passed through
    last_failure: str = ""
    last_failure_at: float | None = None  # epoch seconds


@dataclass(frozen=True, slots=True)
class CaInfo(Payload):
    fingerprint_sha256: str
    not_after: float  # epoch seconds
    days_left: int
    cert_path: str = ""


@dataclass(frozen=True, slots=True)
class FleetReplica(Payload):
    """A replica of the fleet as the shared bucket last saw it (issue 18)."""

    replica_id: str
    advertise_url: str = ""
    last_seen: float = 0.0  # epoch seconds of its latest heartbeat/access report


@dataclass(frozen=True, slots=True)
class FleetStatus(Payload):
    """This replica's view of the fleet sharing one S3 bucket (issue 18); absent when fleet is off."""

    store: str  # s3://bucket/prefix, never with credentials
    replica_id: str
    replicas: tuple[FleetReplica, ...] = ()
    lease_wins: int = 0  # misses this replica filled from upstream as the lease owner
    lease_losses: int = 0  # misses another replica owned: streamed through its internal endpoint
    lease_takeovers: int = 0  # leases taken over from an owner that stopped renewing
    l2_hits: int = 0  # blobs served from the bucket (and teed into the local disk)
    follow_bytes: int = 0  # bytes streamed from other replicas' fills
    bucket_bytes: int | None = None  # bytes under the prefix at the janitor's last listing
    bucket_max: int = 0  # fleet.max_size, 0 = unbounded
    janitor: str = ""  # replica_id of the janitor lease holder, "" if none
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Status(Payload):
    api_version: int
    version: str
    pid: int
    started: float  # epoch seconds
    uptime: float
    listen: tuple[str, ...]
    ca: CaInfo
    registries: tuple[RegistryStatus, ...] = ()
    docker_hub_rate_limit: RateLimit | None = None
    config_path: str | None = None
    control_socket: str = ""
    cache_disk: CacheDisk | None = None
    fleet: FleetStatus | None = None
