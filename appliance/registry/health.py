"""Upstream reachability: fail fast while a registry is known to be unreachable.

Without this, every request during an outage waits for a connect timeout (60 s by default, the
seed's PROXY_CONNECT_TIMEOUT) before the cached copy is served: a 12-layer pull in a lab that lost
its uplink would take minutes. After a connection-level failure, requests to that registry skip the
upstream for ``backoff`` seconds and go straight to the cache (STALE) or fail at once; the first
request after the window tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class UpstreamHealth:
    backoff: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _down: dict[str, tuple[float, str]] = field(default_factory=dict)

    def unreachable(self, host: str) -> str | None:
        """Why ``host`` is being skipped right now, or None when it should be tried."""
        entry = self._down.get(host)
        if entry is None:
            return None
        until, reason = entry
        left = until - self.clock()
        if left <= 0:
            return None
        return f"{reason} (not retried for another {left:.0f}s)"

    def failed(self, host: str, reason: str) -> None:
        self._down[host] = (self.clock() + self.backoff, reason)

    def succeeded(self, host: str) -> None:
        self._down.pop(host, None)

    def down_hosts(self) -> dict[str, str]:
        now = self.clock()
        return {host: reason for host, (until, reason) in self._down.items() if until > now}
