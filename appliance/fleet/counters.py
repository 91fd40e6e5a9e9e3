"""What this replica's fleet tier did since start: the numbers ``FleetService.status()`` reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class FleetCounters:
    """Plain counters, bumped on the event loop only (no locking needed)."""

    lease_wins: int = 0  # misses this replica filled from upstream as the lease owner
    lease_losses: int = 0  # misses another replica owned: followed through its endpoint
    lease_takeovers: int = 0  # leases taken over from an owner that stopped renewing
    l2_hits: int = 0  # fills served from the bucket
    l2_bytes: int = 0  # bytes read from the bucket for fills
    follow_bytes: int = 0  # bytes streamed from other replicas' fills
    served_bytes: int = 0  # bytes this replica's endpoint streamed to other replicas
    published: int = 0  # objects this replica published to the bucket (blobs and manifests)
    publish_failures: int = 0  # uploads aborted (digest mismatch, upstream cut, store error)
    upstream_fetches: int = 0  # upstream GETs this tier let through (as owner, or taking over)
    last_error: str = ""

    def failed(self, message: str) -> None:
        self.last_error = message
