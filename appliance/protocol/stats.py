"""The ``stats`` and ``inflight`` answers: request counters, cache usage, and the fills in progress."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.protocol.codec import Payload

# Run-time imports, not TYPE_CHECKING ones: the codec resolves field types in this module's namespace.
from appliance.protocol.events import EventKind, EventStatus
from appliance.protocol.status import CacheDisk

# --- stats -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counters(Payload):
    requests: int = 0
    hits: int = 0
    misses: int = 0
    stale: int = 0
    revalidated: int = 0
    coalesced: int = 0
    bypass: int = 0
    errors: int = 0
    bytes_from_cache: int = 0  # served without fetching upstream for this request (= bytes saved)
    bytes_from_upstream: int = 0  # fetched upstream and served (MISS, BYPASS)
    hit_ratio: float = 0.0  # cache-served / (cache-served + upstream-served) requests; 0 when none


@dataclass(frozen=True, slots=True)
class RequestCount(Payload):
    """One (registry, kind, status) cell of the request counters."""

    registry: str
    kind: EventKind
    status: EventStatus
    count: int
    bytes: int


@dataclass(frozen=True, slots=True)
class CacheUsage(Payload):
    bytes: int
    entries: int
    cap: int
    filling: int = 0  # bytes reserved by fills in progress
    evicted: int = 0  # entries evicted, expired or purged since start
    disk: CacheDisk | None = None  # the cache's filesystem: full, low or ok


@dataclass(frozen=True, slots=True)
class RegistryStats(Payload):
    registry: str
    counters: Counters
    cache_bytes: int = 0
    cache_entries: int = 0


@dataclass(frozen=True, slots=True)
class EventStreamStats(Payload):
    subscribers: int
    dropped_total: int  # events lost by slow subscribers since start, all subscribers together
    queue_size: int
    replay_size: int


@dataclass(frozen=True, slots=True)
class Stats(Payload):
    since: float  # epoch seconds the counters started at
    totals: Counters
    cache: CacheUsage
    registries: tuple[RegistryStats, ...] = ()
    requests: tuple[RequestCount, ...] = ()
    events: EventStreamStats = field(default_factory=lambda: EventStreamStats(0, 0, 0, 0))
    upstream_errors: int = 0


def hit_ratio(cache_served: int, upstream_served: int) -> float:
    total = cache_served + upstream_served
    return cache_served / total if total else 0.0


# --- in-flight fills ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fill(Payload):
    registry: str
    repository: str
    digest: str
    done: int
    total: int | None
    rate: float  # bytes per second since the fill started
    clients: int  # requests streaming from this fill
    elapsed: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Inflight(Payload):
    fills: tuple[Fill, ...] = ()
