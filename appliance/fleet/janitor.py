"""The fleet's janitor: one replica at a time (elected by ``janitor.lease``) keeps the bucket tidy.

A run lists the bucket once, reads the replicas' access reports and the lease objects, lists the
multipart uploads, asks ``janitor_plan.plan`` what to remove, and removes it: evictions and dead
leases with a conditional DELETE (``If-Match`` the ETag listed: an object rewritten since is left
alone), orphaned uploads aborted.  Every replica runs the loop; only the lease holder acts, and it
keeps the lease renewed between runs, so the role moves only when its holder stops (killed, cut off,
shut down).  The last run's numbers feed ``FleetStatus`` (``bucket_bytes``, ``janitor``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.fleet.bucket import Bucket, BucketError, NotFound, PreconditionFailed
from appliance.fleet.janitor_plan import LEASES_FOLDER, LeaseSeen, Plan, Policy, merge_reports, plan
from appliance.fleet.leases import Holder, Lease, LeaseRecord, Leases
from appliance.fleet.reports import REPORTS_FOLDER, parse_report

log = logging.getLogger(__name__)

JANITOR_LEASE = "janitor.lease"


@dataclass(frozen=True, slots=True)
class JanitorRun:
    """What one run found and did."""

    plan: Plan
    evicted: int
    evicted_bytes: int
    aborted: int
    dead_leases: int
    failures: int  # removals refused or failed (the object changed, the store erred): retried next run

    @property
    def bucket_bytes(self) -> int:
        return self.plan.bucket_bytes - self.evicted_bytes


class Janitor:
    """Runs ``plan`` against the bucket when this replica holds ``janitor.lease``."""

    def __init__(
        self, bucket: Bucket, leases: Leases, policy: Policy, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.bucket = bucket
        self.leases = leases
        self.policy = policy
        self.clock = clock
        self.lease: Lease | None = None
        self.holder = ""  # replica_id of the janitor as last seen ("" unknown)
        self.last: JanitorRun | None = None

    async def elect(self) -> bool:
        """True when this replica is the janitor (holding, or just won, the lease)."""
        if self.lease is not None and self.lease.held:
            return True
        got = await self.leases.acquire(JANITOR_LEASE)
        if isinstance(got, Holder):
            self.lease = None
            self.holder = got.record.owner if got.record is not None else ""
            return False
        self.lease = got
        self.holder = got.record.owner
        self.leases.start_keeping(got)
        log.info("fleet: this replica (%s) is the janitor", got.record.owner)
        return True

    async def run_once(self) -> JanitorRun | None:
        """One run if elected (None otherwise)."""
        if not await self.elect():
            return None
        objects = [info async for info in self.bucket.list()]
        reports: list[dict[str, float]] = []
        seen: list[LeaseSeen] = []
        for info in objects:
            if info.name.startswith(REPORTS_FOLDER):
                try:
                    reports.append(parse_report((await self.bucket.get(info.name))[1]))
                except (NotFound, ValueError):
                    continue
            elif info.name.startswith(LEASES_FOLDER):
                try:
                    _, data = await self.bucket.get(info.name)
                except NotFound:
                    continue
                try:
                    record: LeaseRecord | None = LeaseRecord.from_bytes(data)
                except ValueError:
                    record = None
                seen.append(LeaseSeen(info.name, info.etag, info.modified, record))
        uploads = [upload async for upload in self.bucket.list_uploads()]
        decided = plan(objects, merge_reports(reports), seen, uploads, self.policy, self.clock())
        return await self._apply(decided)

    async def _apply(self, decided: Plan) -> JanitorRun:
        evicted = evicted_bytes = aborted = dead = failures = 0
        for info in decided.evict:
            if self.lease is None or not self.lease.held:
                break  # no longer the janitor: the new one decides from its own listing
            try:
                await self.bucket.delete(info.name, if_match=info.etag)
            except (PreconditionFailed, BucketError) as exc:
                failures += 1
                log.info("fleet janitor: %s not evicted: %s", info.name, exc)
                continue
            evicted += 1
            evicted_bytes += info.size
        for upload in decided.abort:
            try:
                await self.bucket.abort_upload(upload.name, upload.upload_id)
                aborted += 1
            except BucketError as exc:
                failures += 1
                log.info("fleet janitor: upload of %s not aborted: %s", upload.name, exc)
        for lease in decided.dead_leases:
            try:
                await self.bucket.delete(lease.name, if_match=lease.etag)
                dead += 1
            except BucketError as exc:  # renewed or taken over since it was read: alive after all
                failures += 1
                log.info("fleet janitor: lease %s not deleted: %s", lease.name, exc)
        run = JanitorRun(decided, evicted, evicted_bytes, aborted, dead, failures)
        self.last = run
        if decided.short:
            log.warning(
                "fleet janitor: the bucket holds %d bytes, over the low watermark of %d, but the rest "
                "is leased or in use",
                run.bucket_bytes,
                int(self.policy.low * self.policy.max_size),
            )
        return run

    async def run(self, interval: float) -> None:
        """Run every ``interval`` seconds until cancelled (a failed run is logged, retried)."""
        while True:
            try:
                await self.run_once()
            except BucketError as exc:
                log.warning("fleet janitor: run failed: %s", exc)
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self.lease is not None:
            await self.leases.release(self.lease)
            self.lease = None
