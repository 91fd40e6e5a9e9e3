"""Per-identity rate limits: request buckets refuse with a wait, byte buckets pace, and the limit
that applies is the identity's first ``[[access.limits]]`` entry over the default."""

from __future__ import annotations

import asyncio

import pytest

from appliance.access.identities import Identity, IdentityKind
from appliance.access.limits import Bucket, RateLimiter, limit_for, retry_after
from appliance.config.access import UNLIMITED, AccessConfig, Group, IdentityLimit, RateLimit

ALICE = Identity("alice", IdentityKind.USER, frozenset({"ci"}))
BOB = Identity("bob", IdentityKind.USER)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_bucket_gives_until_empty_then_says_how_long_until_it_refills() -> None:
    bucket = Bucket.full(rate=1.0, capacity=3.0, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(1, 0.0) == pytest.approx(1.0)
    assert bucket.take(1, 0.5) == pytest.approx(0.5)  # half refilled; nothing taken by a refusal
    assert bucket.take(1, 1.0) == 0.0
    bucket.refill(1000.0)
    assert bucket.level == 3.0  # never above its capacity


def test_the_first_matching_entry_over_the_default_is_the_limit() -> None:
    access = AccessConfig(
        limit=RateLimit(requests_per_minute=600, bytes_per_second=10e6),
        limits=(
            IdentityLimit("@ci", RateLimit(requests_per_minute=6000)),
            IdentityLimit("alice", RateLimit(requests_per_minute=1)),  # after @ci: never reached
            IdentityLimit("bob", RateLimit(bytes_per_second=UNLIMITED)),
        ),
        groups=(Group("ci", ("alice",)),),
    )
    assert limit_for(access, ALICE) == RateLimit(6000, 10e6)
    assert limit_for(access, BOB) == RateLimit(600, UNLIMITED)
    assert limit_for(access, Identity("carol", IdentityKind.USER)) == RateLimit(600, 10e6)


def test_requests_over_the_rate_are_refused_for_as_long_as_the_bucket_needs() -> None:
    clock = Clock()
    limiter = RateLimiter(AccessConfig(limit=RateLimit(requests_per_minute=60)), clock=clock)
    assert all(limiter.admit(ALICE) is None for _ in range(60))  # a minute's worth at once
    wait = limiter.admit(ALICE)
    assert wait is not None and wait == pytest.approx(1.0) and retry_after(wait) == 1
    assert limiter.admit(BOB) is None  # each identity has its own bucket
    clock.now += 1.0
    assert limiter.admit(ALICE) is None
    assert limiter.limited == 1


def test_an_unlimited_entry_lifts_the_default_and_no_limit_costs_nothing() -> None:
    clock = Clock()
    access = AccessConfig(
        limit=RateLimit(requests_per_minute=1),
        limits=(IdentityLimit("bob", RateLimit(requests_per_minute=UNLIMITED)),),
    )
    limiter = RateLimiter(access, clock=clock)
    assert all(limiter.admit(BOB) is None for _ in range(1000))
    assert limiter.admit(ALICE) is None and limiter.admit(ALICE) is not None
    none = RateLimiter(AccessConfig(), clock=clock)
    assert not none.active and none.admit(ALICE) is None and none.pacer(ALICE) is None


def test_bytes_are_paced_not_refused_and_the_pace_holds_over_time() -> None:
    clock = Clock()
    limiter = RateLimiter(
        AccessConfig(limit=RateLimit(bytes_per_second=1000)), clock=clock, sleep=clock.sleep
    )
    pacer = limiter.pacer(ALICE)
    assert pacer is not None

    async def send(total: int, piece: int) -> None:
        for _ in range(total // piece):
            await pacer.pace(piece)

    start = clock.now
    asyncio.run(send(11_000, 500))
    # The first second's worth goes at once (the bucket was full); the other 10 000 bytes at 1000/s.
    assert clock.now - start == pytest.approx(10.0)
    assert limiter.pacer(BOB) is not None and limiter.pacer(BOB) is not pacer


def test_a_reload_keeps_budgets_unless_the_limits_change() -> None:
    clock = Clock()
    access = AccessConfig(limit=RateLimit(requests_per_minute=1))
    limiter = RateLimiter(access, clock=clock)
    assert limiter.admit(ALICE) is None and limiter.admit(ALICE) is not None
    limiter.update(AccessConfig(enabled=True, limit=RateLimit(requests_per_minute=1)))
    assert limiter.admit(ALICE) is not None  # same limits: the spent budget stays spent
    limiter.update(AccessConfig(limit=RateLimit(requests_per_minute=2)))
    assert limiter.admit(ALICE) is None  # new limits: a fresh bucket
