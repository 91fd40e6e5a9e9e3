"""Leases against a real SeaweedFS: one winner, renewal, takeover of an expired lease, safe release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from appliance.fleet.bucket import Bucket
from appliance.fleet.leases import TAKEOVER_GRACE, Holder, Lease, LeaseRecord, Leases, lease_name
from tests.fixtures.seaweedfs import SeaweedS3

NAME = lease_name("blob", "sha256/" + "a" * 64)


class Clock:
    """A wall clock the test moves (expiry is judged on the replicas' clocks)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def bucket(s3_server: SeaweedS3) -> AsyncIterator[Bucket]:
    async with Bucket(s3_server.fleet_config()) as opened:
        yield opened


def replica(bucket: Bucket, name: str, clock: Clock, ttl: float = 30.0) -> Leases:
    return Leases(bucket, name, f"http://{name}.test:3128", ttl, clock=clock)


def test_lease_names_keep_inside_their_folder() -> None:
    assert NAME == f"leases/blob/sha256/{'a' * 64}.json"
    assert (
        lease_name("tag", "registry.test/library/alpine/3.19")
        == "leases/tag/registry.test/library/alpine/3.19.json"
    )
    for kind, key in (
        ("blob", "../x"),
        ("Blob", "x"),
        ("blob", "a/../../b"),
        ("blob", "/abs"),
        ("blob", "a//b"),
    ):
        with pytest.raises(ValueError):
            lease_name(kind, key)


async def test_of_replicas_racing_for_a_lease_exactly_one_holds_it_and_the_rest_see_who(
    bucket: Bucket,
) -> None:
    clock = Clock()
    racers = [replica(bucket, f"r{i}", clock) for i in range(8)]
    results = await asyncio.gather(*(leases.acquire(NAME) for leases in racers))
    winners = [result for result in results if isinstance(result, Lease)]
    assert len(winners) == 1
    owner = winners[0].record.owner
    for result in results:
        if isinstance(result, Holder):
            assert result.record is not None
            assert (result.record.owner, result.record.advertise_url) == (owner, f"http://{owner}.test:3128")


async def test_an_unexpired_lease_is_not_taken_over_and_an_expired_one_is(bucket: Bucket) -> None:
    clock = Clock()
    a, b, c = (replica(bucket, name, clock, ttl=30.0) for name in "abc")
    held = await a.acquire(NAME)
    assert isinstance(held, Lease)
    clock.now += 30.0  # at expiry, inside the grace for clock skew
    assert isinstance(await b.acquire(NAME), Holder)
    clock.now += TAKEOVER_GRACE + 1
    # Two replicas take over at once: one wins, the other sees the new owner.
    results = await asyncio.gather(b.acquire(NAME), c.acquire(NAME))
    taken = [result for result in results if isinstance(result, Lease)]
    assert len(taken) == 1 and taken[0].taken_over
    new_owner = taken[0].record.owner
    assert [r.record.owner for r in results if isinstance(r, Holder) and r.record] == [new_owner]
    # The old owner's renewal is refused, and its release leaves the new owner's lease alone.
    assert not await a.renew(held) and held.lost.is_set()
    await a.release(held)
    still = await a.read(NAME)
    assert still is not None and still.record is not None and still.record.owner == new_owner


async def test_renewal_pushes_expiry_on_and_release_deletes_only_our_lease(bucket: Bucket) -> None:
    clock = Clock()
    a, b = replica(bucket, "a", clock), replica(bucket, "b", clock)
    held = await a.acquire(NAME)
    assert isinstance(held, Lease)
    clock.now += 25.0
    assert await a.renew(held)
    clock.now += 25.0  # past the first expiry, not the renewed one
    assert isinstance(await b.acquire(NAME), Holder)
    await a.release(held)
    assert await a.read(NAME) is None
    assert isinstance(await b.acquire(NAME), Lease)


async def test_a_kept_lease_is_renewed_in_the_background_until_released(bucket: Bucket) -> None:
    a = Leases(bucket, "a", "http://a.test:3128", ttl=1.5)
    async with a.hold(NAME) as held:
        assert isinstance(held, Lease)
        first = held.record.expires
        await asyncio.sleep(1.2)  # two renewals at TTL/3
        assert held.record.expires > first and held.held
        holder = await a.read(NAME)
        assert holder is not None and holder.etag == held.etag
    assert await a.read(NAME) is None
    await a.close()


async def test_an_object_that_is_not_a_lease_record_is_taken_over(bucket: Bucket) -> None:
    await bucket.put(NAME, b"garbage")
    taken = await replica(bucket, "a", Clock()).acquire(NAME)
    assert isinstance(taken, Lease) and taken.taken_over
    assert LeaseRecord.from_bytes((await bucket.get(NAME))[1]).owner == "a"
