"""Upstream rate limits: Docker Hub's ``ratelimit-*`` headers and ``Retry-After`` after a 429.

Pure bookkeeping: the upstream client feeds every registry response in with the current wall-clock
time, and asks before a manifest or blob request whether the registry told us to back off.  Keeping
out of a registry's way while it is blocking us matters: Docker Hub counts refused pulls too, and the
cache can serve stale content meanwhile.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass, replace

# A 429 without ``Retry-After`` still means "stop": back off this long rather than hammer on.
DEFAULT_BLOCK_SECONDS = 30.0
# A ``Retry-After`` beyond this is treated as a mistake rather than honoured for days.
MAX_BLOCK_SECONDS = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class Quota:
    """One ``ratelimit-*`` header value: ``100;w=21600`` is 100 requests per 21600 s window."""

    value: int
    window: int | None  # seconds; None when the header carries no ``w=``


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """The latest rate-limit facts a registry told us, for the dashboard and for back-off."""

    limit: Quota | None = None  # ``ratelimit-limit``
    remaining: Quota | None = None  # ``ratelimit-remaining``
    source: str | None = None  # ``docker-ratelimit-source``: the IP or account the limit applies to
    blocked_until: float | None = None  # wall-clock time before which we must not ask again
    updated_at: float = 0.0  # wall-clock time of the response these facts came from

    def blocked(self, now: float) -> bool:
        return self.blocked_until is not None and now < self.blocked_until

    def retry_after(self, now: float) -> float:
        """Seconds left until the block lifts (0 when not blocked)."""
        if self.blocked_until is None:
            return 0.0
        return max(0.0, self.blocked_until - now)


def parse_quota(value: str | None) -> Quota | None:
    """``100;w=21600`` -> Quota(100, 21600); ``100`` -> Quota(100, None); junk -> None."""
    if not value:
        return None
    first, *params = (part.strip() for part in value.split(";"))
    try:
        amount = int(first)
    except ValueError:
        return None
    window: int | None = None
    for param in params:
        key, _, raw = param.partition("=")
        if key.strip().lower() == "w":
            try:
                window = int(raw.strip())
            except ValueError:
                window = None
    return Quota(amount, window)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` (delay seconds or an HTTP date) -> absolute wall-clock time, or None if unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() too, and float() refuses it
        return now + min(float(value), MAX_BLOCK_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; an obsolete form may lack the zone
        return None
    return min(when.timestamp(), now + MAX_BLOCK_SECONDS)


def is_rate_limited_request(method: str, path: str) -> bool:
    """Whether a request counts against a pull limit: a manifest or blob GET.

    HEAD is left out on purpose: Docker Hub does not count it, and it is how tags are revalidated.
    """
    if method.upper() != "GET" or not path.startswith("/v2/"):
        return False
    path = path.split("?", 1)[0]
    return "/manifests/" in path or ("/blobs/" in path and "/blobs/uploads" not in path)


class RateLimitTracker:
    """The latest ``RateLimitState`` per registry host.  Owned by one ``UpstreamClient``."""

    def __init__(self) -> None:
        self._states: dict[str, RateLimitState] = {}

    def get(self, registry_host: str) -> RateLimitState | None:
        return self._states.get(registry_host)

    def blocked(self, registry_host: str, now: float) -> RateLimitState | None:
        """The state if the registry asked us to back off and the time has not come yet."""
        state = self._states.get(registry_host)
        return state if state is not None and state.blocked(now) else None

    def observe(self, registry_host: str, status: int, headers: Mapping[str, str], now: float) -> None:
        """Record what one response from the registry itself said about limits."""
        limit = parse_quota(headers.get("ratelimit-limit"))
        remaining = parse_quota(headers.get("ratelimit-remaining"))
        source = headers.get("docker-ratelimit-source")
        previous = self._states.get(registry_host)
        if previous is None and limit is None and remaining is None and status != 429:
            return  # a registry without limits stays out of the table
        state = previous or RateLimitState()
        if limit is not None or remaining is not None or source is not None:
            state = replace(
                state,
                limit=limit or state.limit,
                remaining=remaining if remaining is not None else state.remaining,
                source=source or state.source,
            )
        if status == 429:
            until = parse_retry_after(headers.get("retry-after"), now)
            state = replace(state, blocked_until=until if until is not None else now + DEFAULT_BLOCK_SECONDS)
        self._states[registry_host] = replace(state, updated_at=now)

    def forget(self, registry_host: str) -> None:
        self._states.pop(registry_host, None)
