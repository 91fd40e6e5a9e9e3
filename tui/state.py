"""What the dashboard knows about the engine right now (no Textual at run time).

The app keeps one ``DashboardState`` and publishes a topic on its ``changed`` signal when a part
changes; widgets read the part they draw.  Topics: connection, status, stats, inflight, config, events.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

from appliance import protocol as p
from tui.feed import EventFeed

if TYPE_CHECKING:
    from textual.dom import DOMNode
    from textual.signal import Signal

    from tui.connection import EngineLink

SPARK_POINTS = 60


@dataclass
class DashboardState:
    socket_path: str
    start_command: str
    connected: bool = False
    ever_connected: bool = False
    reason: str = ""
    attempt: int = 0
    status: p.Status | None = None
    stats: p.Stats | None = None
    inflight: p.Inflight = field(default_factory=p.Inflight)
    config: p.ConfigView | None = None
    # Bytes served per second, one point per stats poll; starts flat so the line has a baseline.
    throughput: deque[float] = field(default_factory=lambda: deque([0.0] * SPARK_POINTS, maxlen=SPARK_POINTS))
    _last_served: tuple[int, float] | None = None

    def take_stats(self, stats: p.Stats, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        served = stats.totals.bytes_from_cache + stats.totals.bytes_from_upstream
        if self._last_served is not None:
            before, then = self._last_served
            elapsed = now - then
            if elapsed > 0 and served >= before:
                self.throughput.append((served - before) / elapsed)
        self._last_served = (served, now)
        self.stats = stats

    def forget_rates(self) -> None:
        """A new engine restarts its counters: the next delta must not compare across engines."""
        self._last_served = None

    @property
    def current_rate(self) -> float:
        return self.throughput[-1] if self.throughput else 0.0


class StateHolder(Protocol):
    """What widgets need from the app (kept as a protocol so widgets do not import the app)."""

    state: DashboardState
    feed: EventFeed
    changed: Signal[str]
    link: EngineLink


def holder(node: DOMNode) -> StateHolder:
    return cast(StateHolder, node.app)
