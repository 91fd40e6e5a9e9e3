"""The Prometheus text exposition: parses with prometheus-client's parser, values match the sources."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from appliance import protocol as p
from appliance.cache import CacheUsage, FillProgress, RegistryUsage
from appliance.events import CacheStatus, Event, RequestKind
from appliance.metrics import MetricsInput, escape, render
from appliance.stats import Stats
from appliance.upstream.ratelimit import Quota, RateLimitState


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def _input(stats: Stats) -> MetricsInput:
    return MetricsInput(
        version="9.9.9",
        started=1000.0,
        stats=stats,
        usage=CacheUsage(
            bytes=3000,
            entries=3,
            cap=10_000,
            filling=500,
            registries=(RegistryUsage("ghcr.io", 3000, 3),),
            evicted=4,
        ),
        inflight=[
            FillProgress("ghcr.io", "org/app", "sha256:x", 10, 100, 5.0, readers=2, started=0.0),
            FillProgress(
                "ghcr.io", "org/app", "sha256:y", 10, 10, 5.0, readers=0, started=0.0, finished=True
            ),
        ],
        events_dropped=7,
        event_subscribers=1,
        rate_limits={
            "registry-1.docker.io": RateLimitState(limit=Quota(100, 21600), remaining=Quota(76, 21600))
        },
    )


def _event(status: CacheStatus, nbytes: int, registry: str = "ghcr.io", http_status: int = 200) -> Event:
    return Event(
        1.0,
        "c",
        registry,
        "org/app",
        RequestKind.BLOB,
        "sha256:x",
        status,
        http_status=http_status,
        bytes=nbytes,
    )


def test_rendered_text_parses_and_matches_the_counters() -> None:
    stats = Stats()
    for event in (
        _event(CacheStatus.MISS, 1000),
        _event(CacheStatus.HIT, 1000),
        _event(CacheStatus.HIT, 1000),
        _event(CacheStatus.ERROR, 0, registry='we"ird\\reg', http_status=502),
    ):
        stats(event)
    samples = _samples(render(_input(stats)))
    blob_hit = (("kind", "blob"), ("registry", "ghcr.io"), ("status", "HIT"))
    assert samples[("appliance_cache_requests_total", blob_hit)] == 2
    assert samples[("appliance_cache_response_bytes_total", blob_hit)] == 2000
    assert samples[("appliance_bytes_served_from_cache_total", (("registry", "ghcr.io"),))] == 2000
    assert samples[("appliance_bytes_fetched_upstream_total", (("registry", "ghcr.io"),))] == 1000
    assert samples[("appliance_upstream_errors_total", (("registry", 'we"ird\\reg'),))] == 1
    assert samples[("appliance_cache_size_bytes", ())] == 3000
    assert samples[("appliance_cache_max_size_bytes", ())] == 10_000
    assert samples[("appliance_cache_evictions_total", ())] == 4
    assert samples[("appliance_cache_inflight_fills", ())] == 1
    assert samples[("appliance_cache_inflight_clients", ())] == 2
    hub = (("registry", "registry-1.docker.io"),)
    assert samples[("appliance_upstream_rate_limit_remaining", hub)] == 76
    assert samples[("appliance_events_dropped_total", ())] == 7
    assert samples[("appliance_info", (("version", "9.9.9"),))] == 1


def test_empty_stats_still_render_every_family() -> None:
    text = render(_input(Stats()))
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"appliance_cache_requests", "appliance_events_dropped", "appliance_cache_size_bytes"} <= names


def test_label_values_are_escaped() -> None:
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_access_decisions_are_counted_by_result_and_every_result_is_always_present() -> None:
    stats = Stats()
    for access in ("allowed", "allowed", "denied", "limited", ""):
        stats(
            Event(1.0, "c", "r", "a/b", RequestKind.BLOB, "", CacheStatus.HIT, identity="bob", access=access)
        )
    samples = _samples(render(_input(stats)))

    def decided(result: str) -> float:
        return samples[("appliance_auth_decisions_total", (("result", result),))]

    assert [decided(r) for r in ("allowed", "denied", "unauthenticated", "limited")] == [2, 1, 0, 1]


def _fleet() -> p.FleetStatus:
    return p.FleetStatus(
        store="s3://cache/fleet",
        replica_id="replica-b",
        replicas=(p.FleetReplica("replica-a"), p.FleetReplica("replica-b"), p.FleetReplica("replica-c")),
        lease_wins=12,
        lease_losses=30,
        lease_takeovers=1,
        l2_hits=40,
        follow_bytes=3_500_000,
        bucket_bytes=50 << 30,
        bucket_max=500 << 30,
        janitor="replica-b",
    )


def test_a_fleet_replica_exports_the_fleet_numbers_status_shows() -> None:
    samples = _samples(render(replace(_input(Stats()), fleet=_fleet())))
    assert samples[("appliance_fleet_info", (("replica", "replica-b"), ("store", "s3://cache/fleet")))] == 1
    assert samples[("appliance_fleet_replicas", ())] == 3
    assert samples[("appliance_fleet_lease_wins_total", ())] == 12
    assert samples[("appliance_fleet_lease_losses_total", ())] == 30
    assert samples[("appliance_fleet_lease_takeovers_total", ())] == 1
    assert samples[("appliance_fleet_l2_hits_total", ())] == 40
    assert samples[("appliance_fleet_follow_bytes_total", ())] == 3_500_000
    assert samples[("appliance_fleet_bucket_bytes", ())] == 50 << 30
    assert samples[("appliance_fleet_bucket_max_bytes", ())] == 500 << 30
    assert samples[("appliance_fleet_janitor", ())] == 1


def test_a_bucket_not_listed_yet_has_no_size_sample_rather_than_a_zero() -> None:
    fleet = replace(_fleet(), bucket_bytes=None, janitor="replica-a")
    samples = _samples(render(replace(_input(Stats()), fleet=fleet)))
    assert ("appliance_fleet_bucket_bytes", ()) not in samples
    assert samples[("appliance_fleet_janitor", ())] == 0
    assert samples[("appliance_fleet_bucket_max_bytes", ())] == 500 << 30


def test_a_single_appliance_exports_no_fleet_families() -> None:
    text = render(_input(Stats()))
    assert "appliance_fleet_" not in text
