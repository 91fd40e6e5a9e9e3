"""Request counters: an EventBus listener counting every event by (registry, kind, status).

It runs synchronously on every request, so the hot path is one dict lookup and a few integer adds;
totals, ratios and per-registry views are computed only when someone asks (``appliance stats``,
the dashboard, ``/metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from appliance.events import CacheStatus, Event, RequestKind

FROM_CACHE = frozenset({CacheStatus.HIT, CacheStatus.STALE, CacheStatus.REVALIDATED, CacheStatus.COALESCED})
FROM_UPSTREAM = frozenset({CacheStatus.MISS, CacheStatus.BYPASS})
# How long the latest upstream error keeps a registry "degraded" unless a success follows.
DEGRADED_FOR = 300.0


def is_upstream_error(event: Event) -> bool:
    """An ERROR the upstream caused (unreachable, 5xx, 429), not one the client caused."""
    return event.status is CacheStatus.ERROR and (
        event.http_status >= 500 or event.http_status == 429 or (event.upstream_status or 0) >= 500
    )


@dataclass(slots=True)
class Cell:
    count: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Health:
    requests: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_at: float | None = None
    last_ok_at: float | None = None

    def degraded(self, now: float) -> bool:
        if self.last_error_at is None or now - self.last_error_at > DEGRADED_FOR:
            return False
        return self.last_ok_at is None or self.last_ok_at < self.last_error_at


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int
    by_status: dict[CacheStatus, int]
    bytes_from_cache: int
    bytes_from_upstream: int

    def count(self, status: CacheStatus) -> int:
        return self.by_status.get(status, 0)

    @property
    def cache_served(self) -> int:
        return sum(self.count(s) for s in FROM_CACHE)

    @property
    def upstream_served(self) -> int:
        return sum(self.count(s) for s in FROM_UPSTREAM)


class Stats:
    """Counters since start; ``__call__`` is the EventBus listener."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.since = clock()
        self._clock = clock
        self._cells: dict[tuple[str, RequestKind, CacheStatus], Cell] = {}
        self._health: dict[str, Health] = {}
        self.upstream_errors: dict[str, int] = {}
        # Access decisions by result (allowed, denied, unauthenticated, limited): one per audit record.
        self.decisions: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        key = (event.registry, event.kind, event.status)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = Cell()
        cell.count += 1
        cell.bytes += event.bytes
        if event.access:
            self.decisions[event.access] = self.decisions.get(event.access, 0) + 1
        health = self._health.get(event.registry)
        if health is None:
            health = self._health[event.registry] = Health()
        health.requests += 1
        if is_upstream_error(event):
            health.errors += 1
            health.last_error = event.message
            health.last_error_at = event.time
            self.upstream_errors[event.registry] = self.upstream_errors.get(event.registry, 0) + 1
        elif event.upstream_status is not None and event.upstream_status < 500:
            health.last_ok_at = event.time

    def cells(self) -> list[tuple[str, RequestKind, CacheStatus, int, int]]:
        """(registry, kind, status, count, bytes) for every cell seen, sorted."""
        return sorted((r, k, s, c.count, c.bytes) for (r, k, s), c in self._cells.items())

    def registries(self) -> list[str]:
        return sorted({r for r, _, _ in self._cells})

    def totals(self, registry: str | None = None) -> Totals:
        return _totals((s, c) for (r, _, s), c in self._cells.items() if registry is None or r == registry)

    def health(self, registry: str) -> Health:
        return self._health.get(registry) or Health()

    def degraded(self, registry: str) -> bool:
        return self.health(registry).degraded(self._clock())


def _totals(cells: Iterable[tuple[CacheStatus, Cell]]) -> Totals:
    by_status: dict[CacheStatus, int] = {}
    requests = from_cache = from_upstream = 0
    for status, cell in cells:
        by_status[status] = by_status.get(status, 0) + cell.count
        requests += cell.count
        if status in FROM_CACHE:
            from_cache += cell.bytes
        elif status in FROM_UPSTREAM:
            from_upstream += cell.bytes
    return Totals(requests, by_status, from_cache, from_upstream)
