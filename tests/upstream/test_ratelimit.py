"""Docker Hub's rate-limit headers and Retry-After bookkeeping."""

from __future__ import annotations

import email.utils

import pytest

from appliance.upstream.ratelimit import (
    DEFAULT_BLOCK_SECONDS,
    MAX_BLOCK_SECONDS,
    Quota,
    RateLimitTracker,
    is_rate_limited_request,
    parse_quota,
    parse_retry_after,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "quota"),
    [
        ("100;w=21600", Quota(100, 21600)),
        (" 76 ; w=21600 ", Quota(76, 21600)),
        ("200", Quota(200, None)),
        ("0;w=60;comment=x", Quota(0, 60)),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_quota(value, quota):
    assert parse_quota(value) == quota


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("120", NOW) == NOW + 120
    date = email.utils.formatdate(NOW + 90, usegmt=True)
    assert parse_retry_after(date, NOW) == pytest.approx(NOW + 90)
    assert parse_retry_after("999999999", NOW) == NOW + MAX_BLOCK_SECONDS
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("", NOW) is None


@pytest.mark.parametrize(
    ("method", "path", "limited"),
    [
        ("GET", "/v2/library/alpine/manifests/3.20", True),
        ("GET", "/v2/library/alpine/blobs/sha256:abc", True),
        ("HEAD", "/v2/library/alpine/manifests/3.20", False),
        ("GET", "/v2/", False),
        ("GET", "/v2/library/alpine/tags/list", False),
        ("POST", "/v2/library/alpine/blobs/uploads/", False),
        ("GET", "/v2/library/alpine/blobs/uploads/abc", False),
    ],
)
def test_which_requests_count_against_the_pull_limit(method, path, limited):
    assert is_rate_limited_request(method, path) is limited


def test_tracker_keeps_latest_headers_and_blocks_after_429():
    tracker = RateLimitTracker()
    tracker.observe("hub", 200, {"x": "y"}, NOW)
    assert tracker.get("hub") is None  # no limit headers: nothing to show
    tracker.observe(
        "hub",
        200,
        {
            "ratelimit-limit": "100;w=21600",
            "ratelimit-remaining": "5;w=21600",
            "docker-ratelimit-source": "192.0.2.1",
        },
        NOW,
    )
    tracker.observe("hub", 200, {"ratelimit-remaining": "4;w=21600"}, NOW + 1)
    state = tracker.get("hub")
    assert state is not None
    assert (state.limit, state.remaining, state.source) == (Quota(100, 21600), Quota(4, 21600), "192.0.2.1")
    assert state.updated_at == NOW + 1 and tracker.blocked("hub", NOW + 1) is None
    tracker.observe("hub", 429, {"retry-after": "60", "ratelimit-remaining": "0;w=21600"}, NOW + 2)
    blocked = tracker.blocked("hub", NOW + 3)
    assert blocked is not None and blocked.retry_after(NOW + 3) == pytest.approx(59)
    assert blocked.remaining == Quota(0, 21600)
    assert tracker.blocked("hub", NOW + 62) is None
    assert tracker.blocked("other", NOW) is None


def test_429_without_retry_after_still_backs_off():
    tracker = RateLimitTracker()
    tracker.observe("quay", 429, {}, NOW)
    state = tracker.get("quay")
    assert state is not None and state.blocked_until == NOW + DEFAULT_BLOCK_SECONDS
