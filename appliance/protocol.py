"""The control-socket wire schema (API v1): every request and response body, as typed records.

This module is shared by the engine (``appliance.control``), the CLI and the dashboard, and imports
nothing but the standard library, so the dashboard can depend on it and nothing else of the engine.
``docs/control-protocol.md`` describes the endpoints; the records here are the authority on fields.

Every payload is a frozen dataclass with ``to_json()`` (plain JSON-able dict) and ``from_json()``
(validating; unknown keys are ignored so that an older client can read a newer server's answers,
missing keys take the field's default, a wrong type raises ``ProtocolError``).  Errors travel as
``{"error": {"code": ..., "message": ..., "where": ...}}`` with a non-2xx HTTP status.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, ClassVar, TypeVar, Union
from urllib.parse import urlencode

API_VERSION = 1
PREFIX = f"/v{API_VERSION}"
MASK = "********"

# Endpoints (all JSON over HTTP/1.1 on the Unix socket; EVENTS is a WebSocket).
STATUS = f"{PREFIX}/status"
STATS = f"{PREFIX}/stats"
INFLIGHT = f"{PREFIX}/inflight"
EVENTS = f"{PREFIX}/events"
CONFIG = f"{PREFIX}/config"
CONFIG_ENV = f"{PREFIX}/config/env"
CONFIG_RELOAD = f"{PREFIX}/config/reload"
REGISTRIES = f"{PREFIX}/config/registries"  # POST add; PATCH/DELETE .../{host}
CREDENTIALS = f"{PREFIX}/config/credentials"  # PUT set; DELETE ?scope=
CACHE_IMAGES = f"{PREFIX}/cache/images"
CACHE_PURGE = f"{PREFIX}/cache/purge"
CACHE_PIN = f"{PREFIX}/cache/pin"
CACHE_VERIFY = f"{PREFIX}/cache/verify"


def registry_path(host: str) -> str:
    return f"{REGISTRIES}/{host}"


class ProtocolError(ValueError):
    """A message that does not match the schema."""


# --- closed sets (mirrors of the engine's enums; a test keeps them in step) --------------------------


class EventStatus(StrEnum):
    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"
    REVALIDATED = "REVALIDATED"
    COALESCED = "COALESCED"
    BYPASS = "BYPASS"
    ERROR = "ERROR"


class EventKind(StrEnum):
    BLOB = "blob"
    MANIFEST = "manifest"
    TAG = "tag"
    TOKEN = "token"
    UPLOAD = "upload"
    OTHER = "other"


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"  # malformed body or parameters
    INVALID_CONFIG = "invalid_config"  # the edit was validated and refused; nothing changed
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # e.g. another edit in progress, or the file changed under us
    UNAVAILABLE = "unavailable"  # the engine cannot do it now (e.g. no config file to edit)
    INTERNAL = "internal"


class RegistryHealth(StrEnum):
    UNKNOWN = "unknown"  # no request since start
    OK = "ok"
    DEGRADED = "degraded"  # the most recent upstream outcome was an error
    RATE_LIMITED = "rate-limited"  # the registry told us to back off


class SecretStoreName(StrEnum):
    """Where ``credential set`` keeps the password."""

    TOML = "toml"
    KEYRING = "keyring"
    FILE = "file"


# Statuses whose bytes came out of the cache (so were not fetched upstream for this request).
FROM_CACHE = frozenset({EventStatus.HIT, EventStatus.STALE, EventStatus.REVALIDATED, EventStatus.COALESCED})
FROM_UPSTREAM = frozenset({EventStatus.MISS, EventStatus.BYPASS})

# --- the (de)serialiser ------------------------------------------------------------------------------

P = TypeVar("P", bound="Payload")


class Payload:
    """Mixin for wire records: ``to_json``/``from_json`` driven by the dataclass field types."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls: type[P], data: object) -> P:
        return _decode_record(cls, data, cls.__name__)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def loads(cls: type[P], text: str | bytes) -> P:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"{cls.__name__}: not JSON: {exc}") from None
        return cls.from_json(data)


def _encode(value: object) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Payload):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _decode_record(cls: type[P], data: object, where: str) -> P:
    if not isinstance(data, Mapping):
        raise ProtocolError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{where}.{f.name}: required")
            continue
        values[f.name] = _decode(hints[f.name], data[f.name], f"{where}.{f.name}")
    return cls(**values)


def _decode(tp: Any, value: object, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(arg, value, where)
            except ProtocolError as exc:
                errors.append(str(exc))
        raise ProtocolError("; ".join(errors) or f"{where}: unexpected null")
    if origin is tuple:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list, got {type(value).__name__}")
        item = typing.get_args(tp)[0]
        return tuple(_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list, got {type(value).__name__}")
        return value
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{where}: expected an object, got {type(value).__name__}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Payload):
        return _decode_record(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in tp)
            raise ProtocolError(f"{where}: {value!r} is not one of {allowed}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ProtocolError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ProtocolError(f"{where}: expected a string, got {value!r}")
        return value
    raise ProtocolError(f"{where}: cannot decode type {tp!r}")


# --- errors ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorBody(Payload):
    code: ErrorCode
    message: str
    where: str = ""  # the key, host or parameter at fault

    HTTP_STATUS: ClassVar[dict[ErrorCode, int]] = {
        ErrorCode.BAD_REQUEST: 400,
        ErrorCode.INVALID_CONFIG: 422,
        ErrorCode.NOT_FOUND: 404,
        ErrorCode.CONFLICT: 409,
        ErrorCode.UNAVAILABLE: 503,
        ErrorCode.INTERNAL: 500,
    }

    @property
    def http_status(self) -> int:
        return self.HTTP_STATUS[self.code]

    def envelope(self) -> dict[str, Any]:
        return {"error": self.to_json()}

    @classmethod
    def from_envelope(cls, data: object) -> ErrorBody:
        if isinstance(data, Mapping) and "error" in data:
            return cls.from_json(data["error"])
        raise ProtocolError("not an error envelope")


# --- status ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateLimit(Payload):
    """What a registry last said about its pull quota (Docker Hub's ``ratelimit-*`` headers)."""

    limit: int | None = None
    remaining: int | None = None
    window: int | None = None  # seconds
    source: str | None = None
    blocked_until: float | None = None  # epoch seconds; set after a 429
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RegistryStatus(Payload):
    host: str
    aliases: tuple[str, ...] = ()
    scheme: str = "https"
    health: RegistryHealth = RegistryHealth.UNKNOWN
    requests: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_at: float | None = None
    last_ok_at: float | None = None
    rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class CaInfo(Payload):
    fingerprint_sha256: str
    not_after: float  # epoch seconds
    days_left: int
    cert_path: str = ""


@dataclass(frozen=True, slots=True)
class Status(Payload):
    api_version: int
    version: str
    pid: int
    started: float  # epoch seconds
    uptime: float
    listen: tuple[str, ...]
    ca: CaInfo
    registries: tuple[RegistryStatus, ...] = ()
    docker_hub_rate_limit: RateLimit | None = None
    config_path: str | None = None
    control_socket: str = ""


# --- stats -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counters(Payload):
    requests: int = 0
    hits: int = 0
    misses: int = 0
    stale: int = 0
    revalidated: int = 0
    coalesced: int = 0
    bypass: int = 0
    errors: int = 0
    bytes_from_cache: int = 0  # served without fetching upstream for this request (= bytes saved)
    bytes_from_upstream: int = 0  # fetched upstream and served (MISS, BYPASS)
    hit_ratio: float = 0.0  # cache-served / (cache-served + upstream-served) requests; 0 when none


@dataclass(frozen=True, slots=True)
class RequestCount(Payload):
    """One (registry, kind, status) cell of the request counters."""

    registry: str
    kind: EventKind
    status: EventStatus
    count: int
    bytes: int


@dataclass(frozen=True, slots=True)
class CacheUsage(Payload):
    bytes: int
    entries: int
    cap: int
    filling: int = 0  # bytes reserved by fills in progress
    evicted: int = 0  # entries evicted, expired or purged since start


@dataclass(frozen=True, slots=True)
class RegistryStats(Payload):
    registry: str
    counters: Counters
    cache_bytes: int = 0
    cache_entries: int = 0


@dataclass(frozen=True, slots=True)
class EventStreamStats(Payload):
    subscribers: int
    dropped_total: int  # events lost by slow subscribers since start, all subscribers together
    queue_size: int
    replay_size: int


@dataclass(frozen=True, slots=True)
class Stats(Payload):
    since: float  # epoch seconds the counters started at
    totals: Counters
    cache: CacheUsage
    registries: tuple[RegistryStats, ...] = ()
    requests: tuple[RequestCount, ...] = ()
    events: EventStreamStats = field(default_factory=lambda: EventStreamStats(0, 0, 0, 0))
    upstream_errors: int = 0


# --- in-flight fills ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fill(Payload):
    registry: str
    repository: str
    digest: str
    done: int
    total: int | None
    rate: float  # bytes per second since the fill started
    clients: int  # requests streaming from this fill
    elapsed: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Inflight(Payload):
    fills: tuple[Fill, ...] = ()


# --- events ------------------------------------------------------------------------------------------


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


# --- configuration -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryView(Payload):
    host: str
    aliases: tuple[str, ...] = ()
    auth_hosts: tuple[str, ...] = ()
    scheme: str = "https"
    insecure: bool = False
    ca_file: str | None = None
    allow_push: bool | None = None  # None: the global setting
    manifest_cache: bool | None = None
    tag_ttl: float | None = None


@dataclass(frozen=True, slots=True)
class CredentialView(Payload):
    """A credential with its secret masked: the password itself never crosses the socket outward."""

    scope: str
    username: str
    store: str  # toml, keyring, file, env, seed-env
    reference: str | None = None  # the file path, env var or keyring item (not secret)
    password: str = MASK


@dataclass(frozen=True, slots=True)
class ConfigView(Payload):
    config_path: str | None
    editable: bool  # whether edits can be written (a config file is known)
    listen: str
    cache_dir: str
    ca_dir: str
    control_socket: str
    cache_max_size: int
    cache_inactive: float
    cache_min_free_disk: int
    allow_push: bool
    verify_ssl: bool
    disable_ipv6: bool
    manifest_cache: bool
    tunnel: str
    upstream_proxy: str | None  # password masked
    log_format: str
    debug: bool
    registries: tuple[RegistryView, ...] = ()
    credentials: tuple[CredentialView, ...] = ()


@dataclass(frozen=True, slots=True)
class EnvPair(Payload):
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class EnvView(Payload):
    """The configuration in the seed's env-var format; passwords masked."""

    pairs: tuple[EnvPair, ...]
    shell: str  # ``KEY=value`` lines, quoted for a shell
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RegistryEdit(Payload):
    """Add a registry (``values`` must hold ``host``) or change one (``unset`` removes keys).

    Keys are those of a ``[[registries]]`` table in the TOML file (host, aliases, auth_hosts, scheme,
    insecure, ca_file, allow_push, manifest_cache, tag_ttl); the engine validates them.
    """

    values: dict[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CredentialEdit(Payload):
    scope: str  # host[:port] or host[:port]/repository/prefix
    username: str
    store: SecretStoreName = SecretStoreName.TOML
    password: str | None = field(default=None, repr=False)  # toml and keyring stores
    reference: str | None = None  # the password file, for the file store


@dataclass(frozen=True, slots=True)
class ConfigChange(Payload):
    """The answer to an accepted edit or reload."""

    config_path: str
    applied: bool  # the running engine uses the new configuration
    message: str
    warnings: tuple[str, ...] = ()
    restart_required: tuple[str, ...] = ()  # settings that change only after a restart


# --- cache -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageEntry(Payload):
    registry: str
    repository: str
    pinned: bool
    size: int
    blobs: int
    last_access: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageList(Payload):
    images: tuple[ImageEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class PurgeRequest(Payload):
    """Purge an image (registry + repository), a registry, one digest, or with ``all`` everything."""

    registry: str | None = None
    repository: str | None = None
    digest: str | None = None
    all: bool = False

    def check(self) -> None:
        if self.all and (self.registry or self.repository or self.digest):
            raise ProtocolError("purge: 'all' cannot be combined with a registry, repository or digest")
        if not self.all and not (self.registry or self.digest):
            raise ProtocolError("purge: name a registry (and optionally a repository), a digest, or all")
        if self.repository and not self.registry:
            raise ProtocolError("purge: a repository needs its registry")


@dataclass(frozen=True, slots=True)
class PurgeResult(Payload):
    removed: int


@dataclass(frozen=True, slots=True)
class PinRequest(Payload):
    registry: str
    repository: str
    pinned: bool = True


@dataclass(frozen=True, slots=True)
class PinResult(Payload):
    entries: int


@dataclass(frozen=True, slots=True)
class VerifyRequest(Payload):
    repair: bool = False


@dataclass(frozen=True, slots=True)
class VerifyResult(Payload):
    consistent: bool
    repaired: bool
    checked: int
    rows: int
    summary: str
    corrupt: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    orphans: tuple[str, ...] = ()
    unfinished: tuple[str, ...] = ()
    strays: tuple[str, ...] = ()


def hit_ratio(cache_served: int, upstream_served: int) -> float:
    total = cache_served + upstream_served
    return cache_served / total if total else 0.0


__all__ = [
    "API_VERSION",
    "FROM_CACHE",
    "FROM_UPSTREAM",
    "MASK",
    "PREFIX",
    "CaInfo",
    "ConfigChange",
    "ConfigView",
    "Counters",
    "CredentialEdit",
    "CredentialView",
    "EnvPair",
    "EnvView",
    "ErrorBody",
    "ErrorCode",
    "EventBatch",
    "EventFilter",
    "EventKind",
    "EventRecord",
    "EventStatus",
    "EventStreamStats",
    "Fill",
    "ImageEntry",
    "ImageList",
    "Inflight",
    "Payload",
    "PinRequest",
    "PinResult",
    "ProtocolError",
    "PurgeRequest",
    "PurgeResult",
    "RateLimit",
    "RegistryEdit",
    "RegistryHealth",
    "RegistryStats",
    "RegistryStatus",
    "RegistryView",
    "RequestCount",
    "SecretStoreName",
    "Stats",
    "Status",
    "StreamHello",
    "VerifyRequest",
    "VerifyResult",
    "hit_ratio",
    "parse_stream_frame",
    "registry_path",
]
