"""Fail-fast window after an upstream connection failure."""

from appliance.registry.health import UpstreamHealth


def test_a_failed_host_is_skipped_for_the_backoff_window_then_tried_again() -> None:
    now = [100.0]
    health = UpstreamHealth(backoff=10.0, clock=lambda: now[0])
    assert health.unreachable("r.test") is None
    health.failed("r.test", "connection refused")
    reason = health.unreachable("r.test")
    assert reason is not None and "connection refused" in reason and "10s" in reason
    assert health.unreachable("other.test") is None
    now[0] += 10.5
    assert health.unreachable("r.test") is None
    health.failed("r.test", "timed out")
    health.succeeded("r.test")
    assert health.unreachable("r.test") is None and health.down_hosts() == {}
