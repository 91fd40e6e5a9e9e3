"""The cache disk's state as the status views carry it: the protocol record, the CLI text, /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from appliance import protocol as p
from appliance.cache import CacheUsage
from appliance.cache.storage_health import DiskState, StorageHealth
from appliance.cli.control_text import format_cache_disk
from appliance.control.views import cache_disk
from appliance.metrics import MetricsInput, render
from appliance.stats import Stats


def _full_report() -> StorageHealth:
    health = StorageHealth(min_free=1 << 30, clock=lambda: 1234.0)
    health.saw_free(64 << 20)
    health.failed("cache fill of sha256:ab", OSError(28, "No space left on device"))
    health.dropped("touch", OSError(28, "No space left on device"))
    health.passthrough("cache fill of sha256:cd", OSError(28, "No space left on device"))
    return health


def test_a_write_failing_for_lack_of_space_makes_the_disk_full_until_a_look_shows_room() -> None:
    health = StorageHealth(min_free=0)
    health.saw_free(100 << 20)
    assert health.state is DiskState.OK
    health.failed("x", OSError(5, "Input/output error"))
    assert health.state is DiskState.OK  # a failure, but not for lack of space
    health.failed("manifest", OSError(28, "No space left on device"))
    assert health.state is DiskState.FULL
    health.saw_free(8 << 20)  # some room, not enough to store again
    assert health.state is DiskState.FULL
    health.saw_free(64 << 20)
    assert health.state is DiskState.OK
    health.saw_free(512 << 10)  # under 1 MiB is full whatever the watermark
    assert health.state is DiskState.FULL


def test_status_record_round_trips_and_reads_as_full() -> None:
    record = cache_disk(_full_report().report())
    assert record is not None
    status = p.Status(
        api_version=p.API_VERSION,
        version="1",
        pid=1,
        started=0.0,
        uptime=1.0,
        listen=(),
        ca=p.CaInfo("ff", 0.0, 1),
        cache_disk=record,
    )
    again = p.Status.loads(status.dumps())
    assert again.cache_disk == record
    assert again.cache_disk.state is p.CacheDiskState.FULL
    text = format_cache_disk(record)
    assert text.startswith("FULL: serving cached content, passing the rest through uncached (64.0 MiB free)")
    assert "3 writes failed, 1 use records dropped, 1 fills passed through" in text
    assert "last: cache fill of sha256:cd: No space left on device" in text


def test_metrics_say_the_cache_disk_is_full_with_its_counters() -> None:
    usage = CacheUsage(
        bytes=0, entries=0, cap=10, filling=0, registries=(), evicted=0, storage=_full_report().report()
    )
    text = render(
        MetricsInput(
            version="1",
            started=0.0,
            stats=Stats(),
            usage=usage,
            inflight=[],
            events_dropped=0,
            event_subscribers=0,
            rate_limits={},
        )
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("appliance_cache_disk_full", ())] == 1
    assert samples[("appliance_cache_disk_state", (("state", "full"),))] == 1
    assert samples[("appliance_cache_disk_state", (("state", "ok"),))] == 0
    assert samples[("appliance_cache_disk_free_bytes", ())] == 64 << 20
    assert samples[("appliance_cache_disk_min_free_bytes", ())] == 1 << 30
    assert samples[("appliance_cache_write_failures_total", ())] == 3
    assert samples[("appliance_cache_dropped_records_total", ())] == 1
    assert samples[("appliance_cache_passthrough_fills_total", ())] == 1
