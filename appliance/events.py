"""Request events: one per client request, published to a bounded fan-out bus.

The bus never blocks a publisher: each subscriber has a bounded queue, and a subscriber that falls
behind loses its oldest events while a drop counter says how many.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class CacheStatus(StrEnum):
    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"
    REVALIDATED = "REVALIDATED"
    COALESCED = "COALESCED"  # streamed from a fill another request started
    BYPASS = "BYPASS"  # not cacheable (push, tags list, token, ...) or cache full
    ERROR = "ERROR"


class AccessResult(StrEnum):
    """The access decision taken for a request (issue 17's audit record); "" on an event: none taken."""

    ALLOWED = "allowed"
    DENIED = "denied"  # an identity the ACL refuses: 403
    UNAUTHENTICATED = "unauthenticated"  # no or bad credentials: 401 / 407
    LIMITED = "limited"  # over a per-identity rate limit: 429


class RequestKind(StrEnum):
    BLOB = "blob"
    MANIFEST = "manifest"
    TAG = "tag"  # tags/list
    TOKEN = "token"
    UPLOAD = "upload"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Event:
    """What happened to one client request."""

    time: float
    client: str
    registry: str
    repository: str
    kind: RequestKind
    reference: str
    status: CacheStatus
    method: str = "GET"
    http_status: int = 200
    bytes: int = 0
    duration: float = 0.0
    upstream_status: int | None = None
    message: str = ""  # a one-line reason for ERROR/STALE/BYPASS; never contains secrets
    # The audit trail (issue 17): who asked ("" when no identity applies), what the access decision
    # was ("" when none was taken, else one of AccessResult) and why, in words without secrets.
    identity: str = ""
    access: str = ""
    access_reason: str = ""

    def to_dict(self) -> dict[str, object]:
        # Spelled out rather than dataclasses.asdict (which deep-copies every value): this runs
        # for every event a subscriber or the JSON access log sees.
        return {
            "time": self.time,
            "client": self.client,
            "registry": self.registry,
            "repository": self.repository,
            "kind": str(self.kind),
            "reference": self.reference,
            "status": str(self.status),
            "method": self.method,
            "http_status": self.http_status,
            "bytes": self.bytes,
            "duration": self.duration,
            "upstream_status": self.upstream_status,
            "message": self.message,
            "identity": self.identity,
            "access": self.access,
            "access_reason": self.access_reason,
        }


@dataclass(slots=True)
class Subscription:
    """One subscriber's bounded queue."""

    queue: collections.deque[Event]
    wake: asyncio.Event
    predicate: Callable[[Event], bool] | None
    dropped: int = 0

    async def next_batch(self) -> list[Event]:
        while not self.queue:
            self.wake.clear()
            await self.wake.wait()
        batch = list(self.queue)
        self.queue.clear()
        return batch


@dataclass(slots=True)
class EventBus:
    """Fan-out of events to subscribers, plus a replay ring of the most recent ones."""

    replay_size: int = 500
    queue_size: int = 10_000
    _ring: collections.deque[Event] = field(init=False)
    _subs: list[Subscription] = field(default_factory=list)
    _listeners: list[Callable[[Event], None]] = field(default_factory=list)
    dropped_total: int = 0

    def __post_init__(self) -> None:
        self._ring = collections.deque(maxlen=self.replay_size)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """A synchronous listener (stats, access log); must be cheap and never raise."""
        self._listeners.append(listener)

    def publish(self, event: Event) -> None:
        self._ring.append(event)
        for listener in self._listeners:
            listener(event)
        for sub in self._subs:
            if sub.predicate is not None and not sub.predicate(event):
                continue
            if len(sub.queue) >= self.queue_size:
                sub.queue.popleft()
                sub.dropped += 1
                self.dropped_total += 1
            sub.queue.append(event)
            sub.wake.set()

    def subscribe(self, predicate: Callable[[Event], bool] | None = None, replay: int = 0) -> Subscription:
        sub = Subscription(collections.deque(), asyncio.Event(), predicate)
        if replay:
            recent = [e for e in self._ring if predicate is None or predicate(e)]
            sub.queue.extend(recent[-replay:])
            if sub.queue:
                sub.wake.set()
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        """Live subscriptions (the control socket's event streams), for /metrics."""
        return len(self._subs)

    def recent(self) -> list[Event]:
        return list(self._ring)


def now() -> float:
    return time.time()
