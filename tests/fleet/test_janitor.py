"""The janitor against a real SeaweedFS: the cap holds, used and leased blobs survive, leftovers go,
and of two replicas only the lease holder acts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from appliance.fleet.bucket import Bucket
from appliance.fleet.janitor import Janitor
from appliance.fleet.janitor_plan import Policy
from appliance.fleet.leases import Lease, Leases, lease_name
from appliance.fleet.reports import AccessReport
from tests.fixtures.seaweedfs import SeaweedS3

SIZE = 100_000
CAP = 1_000_000


class Clock:
    """The replicas' wall clock, moved by the test (objects' write times are the server's)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def bucket(s3_server: SeaweedS3) -> AsyncIterator[Bucket]:
    async with Bucket(s3_server.fleet_config()) as opened:
        yield opened


def blob_name(n: int) -> str:
    return f"blobs/sha256/{n:064x}"


def janitor(bucket: Bucket, replica: str, clock: Clock, policy: Policy) -> tuple[Janitor, Leases]:
    leases = Leases(bucket, replica, f"http://{replica}.test:3128", 6.0, clock=clock)
    return Janitor(bucket, leases, policy, clock=clock), leases


async def listed_bytes(bucket: Bucket) -> int:
    return sum(info.size for info in [info async for info in bucket.list()])


async def test_the_bucket_ends_under_its_cap_and_blobs_in_use_or_leased_survive(bucket: Bucket) -> None:
    clock = Clock()
    for n in range(14):  # 1.4 MB in a 1 MB bucket
        await bucket.put(blob_name(n), bytes([n]) * SIZE)
    clock.now += 3600  # an hour later nothing was used...
    report = AccessReport("replica-b", clock=clock)
    report.touch(f"sha256:{0:064x}")  # ...but replica B served blob 0 from its own disk just now
    assert await report.flush(bucket)
    filler = Leases(bucket, "replica-c", "http://replica-c.test:3128", 6.0, clock=clock)
    held = await filler.acquire(lease_name("blob", f"sha256/{1:064x}"))  # replica C fills blob 1
    assert isinstance(held, Lease)

    policy = Policy(max_size=CAP, high=0.9, low=0.8, recent=600)
    one, leases = janitor(bucket, "replica-a", clock, policy)
    try:
        run = await one.run_once()
    finally:
        await one.close()
        await leases.close()
    assert run is not None
    assert run.plan.bucket_bytes > CAP
    remaining = {info.name async for info in bucket.list("blobs/")}
    assert blob_name(0) in remaining and blob_name(1) in remaining
    assert run.evicted == len(run.plan.evict) >= 6 and run.failures == 0
    # Least recently written go first: blobs 2.. are the oldest unprotected ones.
    assert {info.name for info in run.plan.evict} == {blob_name(n) for n in range(2, 2 + run.evicted)}
    assert await listed_bytes(bucket) <= 0.8 * CAP
    # What the status reports: the listing less the evictions (the janitor's own lease since released).
    assert 0 <= run.bucket_bytes - await listed_bytes(bucket) < 1000


async def test_orphaned_uploads_and_dead_leases_are_gone_after_a_run(bucket: Bucket) -> None:
    clock = Clock()
    orphan = await bucket.create_upload(blob_name(20))
    await bucket.upload_part(blob_name(20), orphan, 1, b"x" * 1000)
    running = await bucket.create_upload(blob_name(21))
    # The dead lease: written by a replica whose clock said an hour ago, never renewed since.
    past = Clock()
    past.now -= 3600
    dead = Leases(bucket, "replica-killed", "http://killed.test:3128", 6.0, clock=past)
    assert isinstance(await dead.acquire(lease_name("blob", f"sha256/{22:064x}")), Lease)
    # The live lease: a fill still running for blob 21, its upload as old as the orphan.
    clock.now += 600
    alive = Leases(bucket, "replica-c", "http://replica-c.test:3128", 6.0, clock=clock)
    assert isinstance(await alive.acquire(lease_name("blob", f"sha256/{21:064x}")), Lease)

    one, leases = janitor(bucket, "replica-a", clock, Policy.for_fleet(0, lease_ttl=6.0))
    try:
        run = await one.run_once()
    finally:
        await one.close()
        await leases.close()
    assert run is not None and (run.aborted, run.dead_leases) == (1, 1)
    uploads = {(upload.name, upload.upload_id) async for upload in bucket.list_uploads()}
    assert uploads == {(blob_name(21), running)}
    left = {info.name async for info in bucket.list("leases/")}
    assert left == {lease_name("blob", f"sha256/{21:064x}")}


async def test_of_two_janitors_only_the_lease_holder_acts(bucket: Bucket) -> None:
    clock = Clock()
    for n in range(14):
        await bucket.put(blob_name(n), b"y" * SIZE)
    clock.now += 3600
    policy = Policy(max_size=CAP, recent=600)
    (a, leases_a), (b, leases_b) = (
        janitor(bucket, "replica-a", clock, policy),
        janitor(bucket, "replica-b", clock, policy),
    )
    try:
        runs = await asyncio.gather(a.run_once(), b.run_once())
        acted = [run for run in runs if run is not None]
        assert len(acted) == 1 and acted[0].evicted >= 6
        winner = "replica-a" if runs[0] is not None else "replica-b"
        assert a.holder == b.holder == winner
        # The next round too: the holder keeps the role.
        again = await asyncio.gather(a.run_once(), b.run_once())
        assert [run is not None for run in again] == [run is not None for run in runs]
        # Once it stops (shut down), the other takes over.
        stopped, other = (a, b) if winner == "replica-a" else (b, a)
        await stopped.close()
        assert await other.run_once() is not None
    finally:
        await a.close()
        await b.close()
        await leases_a.close()
        await leases_b.close()
