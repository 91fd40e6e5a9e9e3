"""What one registry request asked for (``Call``), what came of it (``Outcome``), and the event of both.

The router's request becomes one immutable ``Call`` before anything is served.  Each service
(``blobs``, ``manifests``, ``tags``, the ``gate``'s relays, the ``/v2/`` ping) returns a ``Reply``:
the response it sent or built and a ``Served`` outcome; a service that raises instead has its
error turned into a ``Failed`` outcome by ``failure``.  ``event`` is the one place a call and its
outcome become the ``events.Event`` that listeners and subscribers see.

A streamed body's byte count is only known once it has been written: the services stream before
they return, so the count is in the outcome they hand back.

An error's upstream status is the status of the upstream answer it came from: ``UpstreamAnswer``
and ``UpstreamError`` carry it as ``status`` (``None`` when nothing answered).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from aiohttp import web

from appliance.errors import ErrorCode, RegistryError, UpstreamError
from appliance.events import CacheStatus, Event, RequestKind
from appliance.logsafe import shown
from appliance.oci import Endpoint, Route
from appliance.registry.responses import Relayed, UpstreamAnswer

_KINDS = {
    Endpoint.BLOB: RequestKind.BLOB,
    Endpoint.MANIFEST: RequestKind.MANIFEST,
    Endpoint.TAGS: RequestKind.TAG,
    Endpoint.UPLOAD: RequestKind.UPLOAD,
}


def kind_of(route: Route) -> RequestKind:
    """The event kind of a registry API route (a token relay says TOKEN itself)."""
    return _KINDS.get(route.endpoint, RequestKind.OTHER)


@dataclass(frozen=True, slots=True)
class Call:
    """One client request as it was asked: who, for which registry, what, and since when.

    ``authorization`` is the client's own ``Authorization``, passed upstream as theirs; it never
    reaches an event or a repr.  ``identity``, ``access`` and ``access_reason`` are the audit
    trail (issue 17): who the client proved to be and the access decision taken for this call.
    """

    client: str
    registry: str
    method: str
    route: Route
    path_qs: str  # what goes upstream, rebuilt from validated parts
    kind: RequestKind
    authorization: str | None = field(default=None, repr=False)
    # A keyed hash naming ``authorization`` ("" when the client sent none): what the cache links
    # content fetched with the client's own credential under (``passthrough_links``).
    credential: str = field(default="", repr=False)
    started: float = field(default_factory=time.monotonic)
    identity: str = ""
    access: str = ""  # "" (no decision taken) or one of protocol.events.AccessResult
    access_reason: str = ""  # words, never a secret
    # Paces the body bytes sent to the client (the identity's byte rate, ``access.limits``): awaited
    # with each piece's size before it is written.  None: no byte limit applies.
    pace: Callable[[int], Awaitable[None]] | None = field(default=None, repr=False, compare=False)

    def decided(self, access: str, reason: str = "") -> Call:
        """This call with the access decision taken for it."""
        return replace(self, access=access, access_reason=reason)


@dataclass(frozen=True, slots=True)
class Served:
    """A response the service built and sent; ``status`` ERROR when its body failed mid-stream."""

    status: CacheStatus
    http_status: int = 200
    bytes: int = 0  # body bytes written to the client
    upstream_status: int | None = None  # the last upstream answer this request got
    message: str = ""  # why, for ERROR/STALE/BYPASS and notable answers; never a secret


@dataclass(frozen=True, slots=True)
class Failed:
    """A service raised: the client gets an error body (or the upstream's own refusal, relayed)."""

    http_status: int
    message: str
    upstream_status: int | None = None
    # An upstream's answer relayed as it came (401, 404, ...) is not our error: BYPASS, not ERROR.
    status: CacheStatus = CacheStatus.ERROR
    bytes: int = 0


Outcome = Served | Failed


@dataclass(frozen=True, slots=True)
class Reply:
    """What a service hands back: the response and what came of the request."""

    response: web.StreamResponse
    outcome: Served


def relayed(sent: Relayed) -> Reply:
    """An upstream answer relayed as it came: the cache untouched (BYPASS)."""
    message = "client disconnected" if sent.disconnected else ""
    return Reply(sent.response, Served(CacheStatus.BYPASS, sent.status, sent.bytes, sent.status, message))


def failure(exc: RegistryError | UpstreamError, registry: str) -> tuple[Failed, RegistryError]:
    """A service's error -> its outcome, and the error the client is answered with."""
    if isinstance(exc, UpstreamAnswer):
        return Failed(exc.status, exc.message, exc.status, CacheStatus.BYPASS), exc
    if isinstance(exc, RegistryError):
        return Failed(exc.status, exc.message), exc
    status = 429 if exc.status == 429 else 502
    code = ErrorCode.TOOMANYREQUESTS if status == 429 else ErrorCode.UNAVAILABLE
    answer = RegistryError(status, code, f"upstream {registry}: {exc.message}")
    return Failed(status, exc.message, exc.status), answer


def event(call: Call, outcome: Outcome) -> Event:
    """The event of ``call`` ending with ``outcome``, now."""
    # Text a client may have chosen is escaped once here, for every listener and subscriber:
    # no forged access-log line, no control character on a dashboard.
    return Event(
        time=time.time(),
        client=call.client,
        registry=call.registry,
        repository=shown(call.route.repository, 300),
        kind=call.kind,
        reference=shown(call.route.reference),
        status=outcome.status,
        method=shown(call.method, 20),
        http_status=outcome.http_status,
        bytes=outcome.bytes,
        duration=time.monotonic() - call.started,
        upstream_status=outcome.upstream_status,
        message=shown(outcome.message, 1000),
        identity=shown(call.identity, 200),
        access=call.access,
        access_reason=shown(call.access_reason, 500),
    )
