"""The event stream: one record per client request, the subscriber's filter, and the WebSocket frames.

The first frame is a ``StreamHello``; every later frame is an ``EventBatch`` of the events since the
previous one, oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlencode

from appliance.protocol.codec import Payload, ProtocolError

# --- closed sets (mirrors of the engine's enums; a test keeps them in step) --------------------------


class EventStatus(StrEnum):
    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"
    REVALIDATED = "REVALIDATED"
    COALESCED = "COALESCED"
    BYPASS = "BYPASS"
    ERROR = "ERROR"


class AccessResult(StrEnum):
    """The access decision recorded on an event (issue 17's audit record); "" means none was taken."""

    ALLOWED = "allowed"
    DENIED = "denied"  # an identity the ACL refuses: 403
    UNAUTHENTICATED = "unauthenticated"  # no or bad credentials: 401 / 407
    LIMITED = "limited"  # over a per-identity rate limit: 429


class EventKind(StrEnum):
    BLOB = "blob"
    MANIFEST = "manifest"
    TAG = "tag"
    TOKEN = "token"
    UPLOAD = "upload"
    OTHER = "other"


# Statuses whose bytes came out of the cache (so were not fetched upstream for this request).
FROM_CACHE = frozenset({EventStatus.HIT, EventStatus.STALE, EventStatus.REVALIDATED, EventStatus.COALESCED})
FROM_UPSTREAM = frozenset({EventStatus.MISS, EventStatus.BYPASS})

# --- records -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRecord(Payload):
    """One client request, as the access log shows it."""

    time: float
    client: str
    registry: str
    repository: str
    kind: EventKind
    reference: str
    status: EventStatus
    method: str = "GET"
    http_status: int = 200
    bytes: int = 0
    duration: float = 0.0
    upstream_status: int | None = None
    message: str = ""
    identity: str = ""
    access: str = ""  # "" or an AccessResult value
    access_reason: str = ""


@dataclass(frozen=True, slots=True)
class EventFilter(Payload):
    """Which events a subscriber wants: empty tuples mean "all"."""

    registries: tuple[str, ...] = ()
    statuses: tuple[EventStatus, ...] = ()
    kinds: tuple[EventKind, ...] = ()

    def matches(self, record: EventRecord) -> bool:
        return self.matches_fields(record.registry, record.status, record.kind)

    def matches_fields(self, registry: str, status: str, kind: str) -> bool:
        return (
            (not self.registries or registry in self.registries)
            and (not self.statuses or status in self.statuses)
            and (not self.kinds or kind in self.kinds)
        )

    def query(self, replay: int = 0) -> str:
        params: list[tuple[str, str]] = [("replay", str(replay))] if replay else []
        if self.registries:
            params.append(("registry", ",".join(self.registries)))
        if self.statuses:
            params.append(("status", ",".join(self.statuses)))
        if self.kinds:
            params.append(("kind", ",".join(self.kinds)))
        return urlencode(params)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> EventFilter:
        def split(name: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in query.get(name, "").split(",") if p.strip())

        try:
            statuses = tuple(EventStatus(s.upper()) for s in split("status"))
        except ValueError:
            raise ProtocolError(
                f"status: expected some of {', '.join(EventStatus)}, got {query.get('status')!r}"
            ) from None
        try:
            kinds = tuple(EventKind(k.lower()) for k in split("kind"))
        except ValueError:
            raise ProtocolError(
                f"kind: expected some of {', '.join(EventKind)}, got {query.get('kind')!r}"
            ) from None
        return cls(registries=split("registry"), statuses=statuses, kinds=kinds)


# --- frames ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamHello(Payload):
    """The first frame on the events WebSocket."""

    api_version: int
    replayed: int  # how many of the events that follow are from before the connection
    queue_size: int
    filter: EventFilter = field(default_factory=EventFilter)
    type: str = "hello"


@dataclass(frozen=True, slots=True)
class EventBatch(Payload):
    """Every later frame: the events since the previous frame, oldest first."""

    events: tuple[EventRecord, ...]
    dropped: int = 0  # events this subscriber lost so far (its queue was full)
    type: str = "events"


def parse_stream_frame(text: str | bytes) -> StreamHello | EventBatch:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"event stream: not JSON: {exc}") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "hello":
        return StreamHello.from_json(data)
    if kind == "events":
        return EventBatch.from_json(data)
    raise ProtocolError(f"event stream: unknown frame type {kind!r}")


def replay_param(query: Mapping[str, str], limit: int) -> int:
    raw = query.get("replay", "0") or "0"
    try:
        value = int(raw)
    except ValueError:
        raise ProtocolError(f"replay: expected a whole number, got {raw!r}") from None
    if value < 0:
        raise ProtocolError("replay: must not be negative")
    return min(value, limit)
