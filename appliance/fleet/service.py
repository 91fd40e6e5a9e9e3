"""``FleetService``: the fleet tier of one replica, built from ``FleetConfig`` and run by the engine.

``start`` opens the bucket, runs the capability probe (``probe.py``: a store that ignores conditions
is refused with ``FleetRefused``, and the engine does not start), and puts the tier under the blob
cache (``BlobCache.tier``).  ``handle`` serves ``/_fleet/...`` on the proxy port (the router passes
those requests here before any client identity or ACL).  ``status`` is this replica's ``FleetStatus``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from appliance.cache.blobs import BlobCache
from appliance.config.fleet import FleetConfig
from appliance.fleet.bucket import Bucket
from appliance.fleet.counters import FleetCounters
from appliance.fleet.endpoint import FillEndpoint
from appliance.fleet.leases import Leases
from appliance.fleet.probe import ProbeResult, probe
from appliance.fleet.tier import FleetTier
from appliance.protocol.status import FleetReplica, FleetStatus

log = logging.getLogger(__name__)

CLOSE_GRACE = 10.0


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
        self.started = True
        log.info(
            "fleet: replica %s shares %s (checks passed: %s)",
            self.fleet.replica_id,
            self.fleet.store,
            ", ".join(self.probed.checks),
        )

    async def close(self) -> None:
        if self.blobs.tier is self.tier:
            self.blobs.tier = None
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
            replicas=(FleetReplica(self.fleet.replica_id, self.fleet.advertise_url, time.time()),),
            lease_wins=counters.lease_wins,
            lease_losses=counters.lease_losses,
            lease_takeovers=counters.lease_takeovers,
            l2_hits=counters.l2_hits,
            follow_bytes=counters.follow_bytes,
            bucket_bytes=None,
            bucket_max=self.fleet.max_size,
            janitor="",
            last_error=counters.last_error,
        )
