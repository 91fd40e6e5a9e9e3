"""``FleetService``: the fleet tier of one replica, built from ``FleetConfig`` and run by the engine.

``start`` opens the bucket, runs the capability probe (``probe.py``: a store that ignores conditions is
refused with ``FleetRefused``, and the engine does not start), and puts the tier under the blob cache
(``BlobCache.tier``). ``handle`` serves ``/_fleet/...`` on the proxy port (the router passes those
requests here before any client identity or ACL). ``status`` is this replica's ``FleetStatus``; the other
replicas in it are those whose access report (``reports/<replica_id>.json``) the bucket holds, seen when
it was last written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from appliance.cache.blobs import BlobCache
from appliance.config.fleet import FleetConfig
from appliance.fleet.bucket import Bucket, BucketError
from appliance.fleet.counters import FleetCounters
from appliance.fleet.endpoint import FillEndpoint
from appliance.fleet.janitor import Janitor
from appliance.fleet.janitor_plan import Policy
from appliance.fleet.leases import Leases
from appliance.fleet.probe import ProbeResult, probe
from appliance.fleet.reports import REPORTS_FOLDER
from appliance.fleet.tier import FleetTier
from appliance.protocol.status import FleetReplica, FleetStatus
from appliance.tasks import OwnedTasks

log = logging.getLogger(__name__)

CLOSE_GRACE = 10.0
# How often this replica writes its access report; the janitor runs every ``fleet.janitor_interval``
# (a minute by default): a report a little older than a run costs nothing (``Policy.recent`` is ten
# minutes).
REPORT_INTERVAL = 30.0


class FleetService:
    """One replica's part in the fleet (see the module docstring)."""

    def __init__(
        self, fleet: FleetConfig, blobs: BlobCache, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.fleet = fleet.checked()
        self.blobs = blobs
        self.counters = FleetCounters()
        self.bucket = Bucket(self.fleet)
        self.leases = Leases(
            self.bucket, self.fleet.replica_id, self.fleet.advertise_url, self.fleet.lease_ttl, clock=clock
        )
        self.tier = FleetTier(self.fleet, self.bucket, self.leases, blobs, self.counters, clock=clock)
        self.endpoint = FillEndpoint(self.fleet.token, self.tier.open_local, self.counters, clock=clock)
        self.janitor = Janitor(
            self.bucket, self.leases, Policy.for_fleet(self.fleet.max_size, self.fleet.lease_ttl), clock=clock
        )
        self._loops = OwnedTasks()
        # The other replicas, as the bucket's access reports show them (refreshed with this one's).
        self._peers: tuple[FleetReplica, ...] = ()
        self.probed: ProbeResult | None = None
        self.started = False

    async def start(self) -> None:
        """Open the bucket, probe it (``FleetRefused`` if unsafe), and put the tier under the cache."""
        await self.bucket.start()
        try:
            self.probed = await probe(self.bucket, self.fleet.replica_id)
            await self.tier.start()
        except BaseException:
            await self.bucket.close()
            raise
        self.blobs.tier = self.tier
        self._loops.spawn(self._report_loop(), name="fleet-reports")
        self._loops.spawn(self.janitor.run(self.fleet.janitor_interval), name="fleet-janitor")
        self.started = True
        log.info(
            "fleet: replica %s shares %s (checks passed: %s)",
            self.fleet.replica_id,
            self.fleet.store,
            ", ".join(self.probed.checks),
        )

    async def _report_loop(self) -> None:
        while True:
            await self._list_peers()
            await asyncio.sleep(REPORT_INTERVAL)
            await self._flush_report()

    async def _list_peers(self) -> None:
        """Note the replicas that wrote an access report: the fleet as the bucket has seen it."""
        peers = []
        try:
            async for info in self.bucket.list(REPORTS_FOLDER):
                replica = info.name.removeprefix(REPORTS_FOLDER).removesuffix(".json")
                if replica and replica != self.fleet.replica_id:
                    peers.append(FleetReplica(replica, "", info.modified))
        except BucketError as exc:
            log.info("fleet: listing the replicas' reports failed (retried): %s", exc)
            return
        self._peers = tuple(sorted(peers, key=lambda peer: peer.replica_id))

    async def _flush_report(self) -> None:
        try:
            await self.tier.report.flush(self.bucket)
        except BucketError as exc:
            log.info("fleet: writing the access report failed (retried): %s", exc)

    async def close(self) -> None:
        if self.blobs.tier is self.tier:
            self.blobs.tier = None
        await self._loops.cancel_all(grace=5.0)
        if self.started:
            await self._flush_report()
            await self.janitor.close()
        try:
            # Verified blobs still uploading: a few seconds now save another replica a download.
            await asyncio.wait_for(self.tier.wait_idle(), CLOSE_GRACE)
        except TimeoutError:
            log.info("fleet: publishes still running at shutdown are abandoned (the janitor aborts them)")
        await self.tier.close()
        await self.leases.close()
        await self.bucket.close()
        self.started = False

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self.endpoint.handle(request)

    def status(self) -> FleetStatus:
        counters = self.counters
        return FleetStatus(
            store=self.fleet.store,
            replica_id=self.fleet.replica_id,
            replicas=(
                FleetReplica(self.fleet.replica_id, self.fleet.advertise_url, time.time()),
                *self._peers,
            ),
            lease_wins=counters.lease_wins,
            lease_losses=counters.lease_losses,
            lease_takeovers=counters.lease_takeovers,
            l2_hits=counters.l2_hits,
            follow_bytes=counters.follow_bytes,
            bucket_bytes=None if self.janitor.last is None else self.janitor.last.bucket_bytes,
            bucket_max=self.fleet.max_size,
            janitor=self.janitor.holder,
            last_error=counters.last_error,
        )
