"""The control-socket wire schema (API v1): every request and response body, as typed records.

This package is shared by the engine (``appliance.control.server``), the CLI and the dashboard, and imports
nothing but the standard library, so the dashboard can depend on it and nothing else of the engine.
``docs/control-protocol.md`` describes the endpoints; the records here are the authority on fields.
Importers use the package (``from appliance import protocol as p``); the submodules are its layout:

* ``endpoints``: the API version and the endpoint paths.
* ``codec``: ``Payload``, the mixin every record shares, and ``ProtocolError``.
* ``errors``: the error envelope (``ErrorCode``, ``ErrorBody``).
* ``status``, ``stats``: the read-only answers (status and health; counters, cache usage, fills).
* ``events``: the event records, the subscriber's filter and the WebSocket frames.
* ``config``: the masked configuration views, the edits, and the answer to an edit.
* ``cache``: image listing, purge, pin and verify.

Every payload is a frozen dataclass with ``to_json()`` (plain JSON-able dict) and ``from_json()``
(validating; unknown keys are ignored so that an older client can read a newer server's answers,
missing keys take the field's default, a wrong type raises ``ProtocolError``).  Errors travel as
``{"error": {"code": ..., "message": ..., "where": ...}}`` with a non-2xx HTTP status.
"""

from appliance.protocol.cache import (
    ImageEntry,
    ImageList,
    PinRequest,
    PinResult,
    PurgeRequest,
    PurgeResult,
    VerifyRequest,
    VerifyResult,
)
from appliance.protocol.codec import Payload, ProtocolError
from appliance.protocol.config import (
    MASK,
    ConfigChange,
    ConfigView,
    CredentialEdit,
    CredentialView,
    EnvPair,
    EnvView,
    RegistryEdit,
    RegistryView,
    SecretStoreName,
)
from appliance.protocol.endpoints import (
    API_VERSION,
    CACHE_IMAGES,
    CACHE_PIN,
    CACHE_PURGE,
    CACHE_VERIFY,
    CONFIG,
    CONFIG_ENV,
    CONFIG_RELOAD,
    CREDENTIALS,
    EVENTS,
    INFLIGHT,
    PREFIX,
    REGISTRIES,
    STATS,
    STATUS,
    registry_path,
)
from appliance.protocol.errors import ErrorBody, ErrorCode
from appliance.protocol.events import (
    FROM_CACHE,
    FROM_UPSTREAM,
    EventBatch,
    EventFilter,
    EventKind,
    EventRecord,
    EventStatus,
    StreamHello,
    parse_stream_frame,
    replay_param,
)
from appliance.protocol.stats import (
    CacheUsage,
    Counters,
    EventStreamStats,
    Fill,
    Inflight,
    RegistryStats,
    RequestCount,
    Stats,
    hit_ratio,
)
from appliance.protocol.status import (
    CacheDisk,
    CacheDiskState,
    CaInfo,
    FleetReplica,
    FleetStatus,
    RateLimit,
    RegistryHealth,
    RegistryStatus,
    Status,
)

__all__ = [
    "API_VERSION",
    "CACHE_IMAGES",
    "CACHE_PIN",
    "CACHE_PURGE",
    "CACHE_VERIFY",
    "CONFIG",
    "CONFIG_ENV",
    "CONFIG_RELOAD",
    "CREDENTIALS",
    "EVENTS",
    "FROM_CACHE",
    "FROM_UPSTREAM",
    "INFLIGHT",
    "MASK",
    "PREFIX",
    "REGISTRIES",
    "STATS",
    "STATUS",
    "CaInfo",
    "CacheDisk",
    "CacheDiskState",
    "CacheUsage",
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
    "FleetReplica",
    "FleetStatus",
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
    "replay_param",
]
