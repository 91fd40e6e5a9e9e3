"""Per-identity rate limits: a token bucket for requests per minute and one for bytes per second.

``[access] requests_per_minute`` and ``bytes_per_second`` apply to every identity; an
``[[access.limits]]`` entry (the first whose ``who`` names the identity or one of its ``@groups``)
replaces either for its identity, or lifts it (``"unlimited"``).  Each identity has its own buckets,
shared by all its connections: a CI pool of fifty runners as one identity shares one budget.

Requests are admitted or refused (``admit`` says how long to wait: the ``Retry-After`` of a 429);
bytes are never refused but paced (``Pacer.pace`` sleeps before a write once the bucket is empty),
so a client over its byte rate gets its image more slowly, not an error halfway through a layer.
A request bucket holds one minute's worth (a pull's burst of a few dozen requests passes at once);
a byte bucket one second's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from appliance.access.identities import Identity
from appliance.config.access import UNLIMITED, AccessConfig, IdentityLimit, RateLimit

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class Bucket:
    """A token bucket: ``rate`` tokens a second up to ``capacity``; it may go into debt (pacing)."""

    rate: float
    capacity: float
    level: float
    stamp: float

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> Bucket:
        return cls(rate, capacity, capacity, now)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` if the bucket holds it: 0.0; else nothing is taken, and the seconds until
        it will hold it are returned."""
        self.refill(now)
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate

    def spend(self, amount: float, now: float) -> float:
        """Take ``amount`` whatever the level: the seconds the caller should wait to pay the debt."""
        self.refill(now)
        self.level -= amount
        return -self.level / self.rate if self.level < 0 else 0.0


def limit_for(access: AccessConfig, identity: Identity) -> RateLimit:
    """The limits that apply to ``identity``: its first ``[[access.limits]]`` entry over the default."""
    for entry in access.limits:
        if _names(entry, identity):
            return entry.limit.over(access.limit)
    return access.limit


def _names(entry: IdentityLimit, identity: Identity) -> bool:
    if entry.who.startswith("@"):
        return entry.who[1:] in identity.groups
    return entry.who == identity.name


def _limited(value: float | None) -> bool:
    return value is not None and value != UNLIMITED and value > 0


@dataclass(slots=True)
class Pacer:
    """Paces one identity's bytes: ``pace(n)`` returns once ``n`` more bytes are within its rate."""

    bucket: Bucket
    clock: Callable[[], float]
    sleep: Sleep

    async def pace(self, nbytes: int) -> None:
        wait = self.bucket.spend(nbytes, self.clock())
        if wait > 0:
            await self.sleep(wait)


class RateLimiter:
    """The buckets of every identity, for one ``[access]`` configuration at a time."""

    def __init__(
        self,
        access: AccessConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.access = access
        # identity name -> (the limit its buckets were made for, request bucket, byte bucket)
        self._buckets: dict[str, tuple[RateLimit, Bucket | None, Bucket | None]] = {}
        self.limited = 0  # requests refused for their rate (a counter for tests and metrics)

    @property
    def active(self) -> bool:
        """Whether any limit is configured at all (none: ``admit`` and ``pacer`` cost nothing)."""
        return bool(self.access.limits) or self.access.limit != RateLimit()

    def update(self, access: AccessConfig) -> None:
        """A new configuration: when the limits (or the groups they name) changed, every bucket
        starts afresh (full); otherwise they carry on, so a reload does not reset a budget."""
        before = (self.access.limit, self.access.limits, self.access.groups)
        self.access = access
        if (access.limit, access.limits, access.groups) != before:
            self._buckets.clear()

    def _entry(self, identity: Identity) -> tuple[RateLimit, Bucket | None, Bucket | None]:
        entry = self._buckets.get(identity.name)
        if entry is not None:
            return entry
        limit = limit_for(self.access, identity)
        now = self._clock()
        requests = bytes_ = None
        if _limited(limit.requests_per_minute):
            rpm = float(limit.requests_per_minute or 0)
            requests = Bucket.full(rpm / 60.0, rpm, now)
        if _limited(limit.bytes_per_second):
            bps = float(limit.bytes_per_second or 0)
            bytes_ = Bucket.full(bps, bps, now)
        entry = (limit, requests, bytes_)
        self._buckets[identity.name] = entry
        return entry

    def admit(self, identity: Identity) -> float | None:
        """None when ``identity`` may make one more request now; else the seconds to wait."""
        if not self.active:
            return None
        _, requests, _ = self._entry(identity)
        if requests is None:
            return None
        wait = requests.take(1.0, self._clock())
        if wait <= 0:
            return None
        self.limited += 1
        return wait

    def pacer(self, identity: Identity) -> Pacer | None:
        """The pacer of ``identity``'s bytes, or None when its bytes are not limited."""
        if not self.active:
            return None
        _, _, bytes_ = self._entry(identity)
        return None if bytes_ is None else Pacer(bytes_, self._clock, self._sleep)


def retry_after(wait: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least one."""
    return max(1, math.ceil(wait))
