"""``GET /metrics``: the Prometheus text exposition format (0.0.4), written directly.

No prometheus-client at run time: every number already lives in ``Stats``, the cache and the
event bus, so rendering is one pass over them per scrape and no second set of counters can drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from appliance.cache import CacheUsage, FillProgress
from appliance.cache.storage_health import DiskState, StorageReport
from appliance.events import AccessResult
from appliance.protocol.status import FleetStatus
from appliance.stats import FROM_CACHE, FROM_UPSTREAM, Stats
from appliance.upstream.ratelimit import RateLimitState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# How the front door asks for the fleet's numbers at scrape time without importing the fleet tier:
# the engine passes ``FleetService.status`` (issue 18); the record is the one ``appliance status`` shows.
FleetProvider = Callable[[], FleetStatus | None]


@dataclass(frozen=True, slots=True)
class MetricsInput:
    version: str
    started: float
    stats: Stats
    usage: CacheUsage
    inflight: Sequence[FillProgress]
    events_dropped: int
    event_subscribers: int
    rate_limits: Mapping[str, RateLimitState]  # registry host -> last known quota
    fleet: FleetStatus | None = None  # this replica's view of the fleet; None when fleet is off


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        text = repr(float(value)) if isinstance(value, float) else str(value)
        if labels:
            inner = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {text}")
        else:
            self.lines.append(f"{name} {text}")


def render(data: MetricsInput) -> str:
    w = _Writer()
    w.family("appliance_info", "gauge", "Version of the running appliance.")
    w.sample("appliance_info", 1, {"version": data.version})
    w.family("appliance_start_time_seconds", "gauge", "Start time of the appliance, Unix seconds.")
    w.sample("appliance_start_time_seconds", float(data.started))

    cells = data.stats.cells()
    w.family("appliance_cache_requests_total", "counter", "Client requests by registry, kind, cache status.")
    for registry, kind, status, count, _ in cells:
        w.sample(
            "appliance_cache_requests_total", count, {"registry": registry, "kind": kind, "status": status}
        )
    w.family(
        "appliance_cache_response_bytes_total", "counter", "Bytes sent to clients by registry, kind, status."
    )
    for registry, kind, status, _, nbytes in cells:
        w.sample(
            "appliance_cache_response_bytes_total",
            nbytes,
            {"registry": registry, "kind": kind, "status": status},
        )
    served: dict[str, int] = {}
    fetched: dict[str, int] = {}
    for registry, _, status, _, nbytes in cells:
        if status in FROM_CACHE:
            served[registry] = served.get(registry, 0) + nbytes
        elif status in FROM_UPSTREAM:
            fetched[registry] = fetched.get(registry, 0) + nbytes
    w.family(
        "appliance_bytes_served_from_cache_total",
        "counter",
        "Bytes served to clients from the cache (HIT, STALE, REVALIDATED, COALESCED): bytes saved.",
    )
    for registry in sorted(served):
        w.sample("appliance_bytes_served_from_cache_total", served[registry], {"registry": registry})
    w.family(
        "appliance_bytes_fetched_upstream_total",
        "counter",
        "Bytes fetched from upstream and served to clients (MISS, BYPASS).",
    )
    for registry in sorted(fetched):
        w.sample("appliance_bytes_fetched_upstream_total", fetched[registry], {"registry": registry})
    w.family(
        "appliance_auth_decisions_total",
        "counter",
        "Client access decisions (one per audit record) by result; none while access control is off.",
    )
    for result in AccessResult:
        w.sample("appliance_auth_decisions_total", data.stats.decisions.get(result, 0), {"result": result})
    w.family("appliance_upstream_errors_total", "counter", "Requests that failed because of the upstream.")
    for registry, count in sorted(data.stats.upstream_errors.items()):
        w.sample("appliance_upstream_errors_total", count, {"registry": registry})

    usage = data.usage
    w.family("appliance_cache_size_bytes", "gauge", "Bytes of committed cache entries.")
    w.sample("appliance_cache_size_bytes", usage.bytes)
    w.family("appliance_cache_max_size_bytes", "gauge", "The cache's hard cap (CACHE_MAX_SIZE).")
    w.sample("appliance_cache_max_size_bytes", usage.cap)
    w.family("appliance_cache_reserved_bytes", "gauge", "Bytes reserved by fills in progress.")
    w.sample("appliance_cache_reserved_bytes", usage.filling)
    w.family("appliance_cache_entries", "gauge", "Committed cache entries (blobs and manifests).")
    w.sample("appliance_cache_entries", usage.entries)
    w.family("appliance_cache_registry_size_bytes", "gauge", "Bytes of cache entries per registry.")
    for reg in usage.registries:
        w.sample("appliance_cache_registry_size_bytes", reg.bytes, {"registry": reg.registry})
    w.family("appliance_cache_evictions_total", "counter", "Entries evicted, expired or purged since start.")
    w.sample("appliance_cache_evictions_total", usage.evicted)
    _storage(w, usage.storage)

    fills = [f for f in data.inflight if not f.finished]
    w.family("appliance_cache_inflight_fills", "gauge", "Blob downloads into the cache in progress.")
    w.sample("appliance_cache_inflight_fills", len(fills))
    w.family("appliance_cache_inflight_clients", "gauge", "Client requests streaming from fills in progress.")
    w.sample("appliance_cache_inflight_clients", sum(f.readers for f in fills))

    w.family(
        "appliance_upstream_rate_limit_remaining",
        "gauge",
        "Pulls left in the registry's rate-limit window (Docker Hub ratelimit-remaining).",
    )
    for host, state in sorted(data.rate_limits.items()):
        if state.remaining is not None:
            w.sample("appliance_upstream_rate_limit_remaining", state.remaining.value, {"registry": host})
    w.family("appliance_upstream_rate_limit_limit", "gauge", "The registry's pull quota per window.")
    for host, state in sorted(data.rate_limits.items()):
        if state.limit is not None:
            w.sample("appliance_upstream_rate_limit_limit", state.limit.value, {"registry": host})

    w.family("appliance_events_dropped_total", "counter", "Events lost by slow event-stream subscribers.")
    w.sample("appliance_events_dropped_total", data.events_dropped)
    w.family("appliance_events_subscribers", "gauge", "Connected event-stream subscribers.")
    w.sample("appliance_events_subscribers", data.event_subscribers)
    if data.fleet is not None:
        _fleet(w, data.fleet)
    return "\n".join(w.lines) + "\n"


def _storage(w: _Writer, storage: StorageReport | None) -> None:
    if storage is None:
        return
    w.family(
        "appliance_cache_disk_state",
        "gauge",
        "The cache disk's state, 1 for the current one: ok, low (under min_free_disk, new blobs pass"
        " through) or full (writes fail for lack of space; cached content is served, the rest passed"
        " through).",
    )
    for state in DiskState:
        w.sample("appliance_cache_disk_state", int(storage.state is state), {"state": state.value})
    w.family("appliance_cache_disk_full", "gauge", "1 while the cache disk is full, else 0.")
    w.sample("appliance_cache_disk_full", int(storage.state is DiskState.FULL))
    if storage.free is not None:
        w.family("appliance_cache_disk_free_bytes", "gauge", "Bytes free on the cache's filesystem.")
        w.sample("appliance_cache_disk_free_bytes", storage.free)
    w.family("appliance_cache_disk_min_free_bytes", "gauge", "The free-space watermark (min_free_disk).")
    w.sample("appliance_cache_disk_min_free_bytes", storage.min_free)
    w.family("appliance_cache_write_failures_total", "counter", "Cache writes (files or index) that failed.")
    w.sample("appliance_cache_write_failures_total", storage.write_failures)
    w.family(
        "appliance_cache_dropped_records_total",
        "counter",
        "Index writes that only record use (access times, references) dropped because they failed.",
    )
    w.sample("appliance_cache_dropped_records_total", storage.dropped_records)
    w.family(
        "appliance_cache_passthrough_fills_total",
        "counter",
        "Fills whose storage failed mid-way and whose readers got the blob passed through uncached.",
    )
    w.sample("appliance_cache_passthrough_fills_total", storage.passthrough_fills)


def _fleet(w: _Writer, fleet: FleetStatus) -> None:
    """``appliance_fleet_*``: the same numbers as the fleet block of ``appliance status``."""
    w.family("appliance_fleet_info", "gauge", "This replica of the fleet and the store it shares.")
    w.sample("appliance_fleet_info", 1, {"replica": fleet.replica_id, "store": fleet.store})
    w.family("appliance_fleet_replicas", "gauge", "Replicas seen in the shared bucket, this one included.")
    w.sample("appliance_fleet_replicas", len(fleet.replicas))
    for name, value, help_text in (
        ("lease_wins", fleet.lease_wins, "Misses this replica filled from upstream as the lease owner."),
        (
            "lease_losses",
            fleet.lease_losses,
            "Misses another replica owned: streamed from its fill through the internal endpoint.",
        ),
        ("lease_takeovers", fleet.lease_takeovers, "Leases taken over from an owner that stopped renewing."),
        ("l2_hits", fleet.l2_hits, "Blobs served from the shared bucket (L2) and copied to the local disk."),
        ("follow_bytes", fleet.follow_bytes, "Bytes streamed from other replicas' fills."),
    ):
        w.family(f"appliance_fleet_{name}_total", "counter", help_text)
        w.sample(f"appliance_fleet_{name}_total", value)
    if fleet.bucket_bytes is not None:
        # Absent until the janitor's first listing: a 0 would read as an empty bucket.
        w.family(
            "appliance_fleet_bucket_bytes", "gauge", "Bytes under the fleet's prefix at the last listing."
        )
        w.sample("appliance_fleet_bucket_bytes", fleet.bucket_bytes)
    w.family("appliance_fleet_bucket_max_bytes", "gauge", "The bucket's cap (FLEET_MAX_SIZE), 0 = unbounded.")
    w.sample("appliance_fleet_bucket_max_bytes", fleet.bucket_max)
    w.family("appliance_fleet_janitor", "gauge", "1 while this replica holds the janitor lease, else 0.")
    w.sample("appliance_fleet_janitor", int(fleet.janitor == fleet.replica_id))
