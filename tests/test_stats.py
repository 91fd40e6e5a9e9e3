"""Request counters fed by events: totals, bytes saved, per-registry health."""

from __future__ import annotations

from appliance.events import CacheStatus, Event, EventBus, RequestKind
from appliance.stats import Stats


def _event(
    status: CacheStatus,
    nbytes: int = 0,
    *,
    registry: str = "ghcr.io",
    kind: RequestKind = RequestKind.BLOB,
    http_status: int = 200,
    upstream_status: int | None = None,
    at: float = 100.0,
    message: str = "",
) -> Event:
    return Event(
        time=at,
        client="c",
        registry=registry,
        repository="org/app",
        kind=kind,
        reference="ref",
        status=status,
        http_status=http_status,
        bytes=nbytes,
        upstream_status=upstream_status,
        message=message,
    )


def test_counts_and_bytes_split_between_cache_and_upstream() -> None:
    stats = Stats(clock=lambda: 100.0)
    bus = EventBus()
    bus.add_listener(stats)
    bus.publish(_event(CacheStatus.MISS, 1000, upstream_status=200))
    bus.publish(_event(CacheStatus.COALESCED, 1000))
    bus.publish(_event(CacheStatus.HIT, 1000))
    bus.publish(_event(CacheStatus.BYPASS, 50, kind=RequestKind.TOKEN))
    bus.publish(_event(CacheStatus.HIT, 10, kind=RequestKind.MANIFEST, registry="quay.io"))
    totals = stats.totals()
    assert totals.requests == 5
    assert totals.count(CacheStatus.HIT) == 2
    assert totals.bytes_from_cache == 2010
    assert totals.bytes_from_upstream == 1050
    ghcr = stats.totals("ghcr.io")
    assert (ghcr.requests, ghcr.bytes_from_cache) == (4, 2000)
    assert stats.registries() == ["ghcr.io", "quay.io"]
    cells = stats.cells()
    assert ("ghcr.io", RequestKind.BLOB, CacheStatus.HIT, 1, 1000) in cells
    assert ("quay.io", RequestKind.MANIFEST, CacheStatus.HIT, 1, 10) in cells


def test_upstream_errors_degrade_a_registry_until_a_success() -> None:
    now = [100.0]
    stats = Stats(clock=lambda: now[0])
    stats(_event(CacheStatus.ERROR, http_status=502, at=100.0, message="connection refused"))
    stats(_event(CacheStatus.ERROR, http_status=403, at=100.0, message="push disabled"))
    assert stats.upstream_errors == {"ghcr.io": 1}
    assert stats.degraded("ghcr.io")
    assert stats.health("ghcr.io").last_error == "connection refused"
    stats(_event(CacheStatus.MISS, 5, upstream_status=200, at=101.0))
    assert not stats.degraded("ghcr.io")
    stats(_event(CacheStatus.ERROR, http_status=429, at=102.0))
    assert stats.degraded("ghcr.io")
    now[0] = 102.0 + 301
    assert not stats.degraded("ghcr.io")  # an old error alone no longer says anything


def test_client_errors_are_not_upstream_errors() -> None:
    stats = Stats()
    stats(_event(CacheStatus.ERROR, http_status=404))
    assert stats.upstream_errors == {}
    assert stats.totals().count(CacheStatus.ERROR) == 1
    assert not stats.degraded("ghcr.io")
