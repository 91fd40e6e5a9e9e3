"""The front door: the one owner of client sockets on the listen port.

Every connection starts in ``FrontDoorProtocol``, which looks at the first request line:

* ``CONNECT host:port`` for a host the appliance serves: answer ``200``, terminate TLS with a leaf
  certificate for that host (``loop.start_tls``), and hand the decrypted stream to aiohttp's
  low-level HTTP server (``web.Server``), so requests inside the tunnel are ordinary aiohttp requests.
* ``CONNECT`` to any other host: check the tunnel policy, then splice bytes untouched.
* anything else: hand the connection, with the bytes already read, to the same aiohttp server
  (``/ca.crt``, ``/``, ``/setup/...``, mirror-mode ``/v2/...``, absolute-URI ``http://`` requests).

Every connection has deadlines and a place in the limits (``Limits``): the request head must be
complete within ``timeouts.client_header`` of the connection opening - carried over when the
connection is handed to aiohttp, and armed again inside MITM tunnels - and of its first byte on a
kept-alive connection (``408`` then close); between requests aiohttp's keep-alive timer is the idle
deadline (``timeouts.keepalive``).  ``connections_per_source`` and ``max_connections`` cap how many
connections one client address and everyone together may hold (``503`` then close at accept), which
bounds the memory stalled clients can pin.  Before any of that, the network floor
(``access.network.ClientFloor``, ``allow_clients``) closes a connection from a source it does not
allow as soon as it is accepted, on every listener, before a byte is read (on the TLS listener,
before the handshake: that listener runs ``start_tls`` itself rather than letting asyncio start it).

Two pitfalls shape this module (see docs/architecture.md): decrypted bytes can arrive before the
protocol switch (so a small buffering protocol sits under ``start_tls`` until aiohttp takes over and
receives whatever it buffered), and a transport must never be left to an unreferenced
``StreamWriter`` (its finaliser closes the transport), so tunnels keep their writers alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from appliance import memory
from appliance.access.identities import Identity
from appliance.access.network import ClientFloor
from appliance.config.model import Limits, Timeouts
from appliance.front.client_ca import identity_of_peer
from appliance.front.leaf_certs import SNI_ATTRIBUTE
from appliance.logsafe import shown
from appliance.tasks import OwnedTasks

log = logging.getLogger("appliance.server")

MAX_CONNECT_HEAD = 16 * 1024
CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"
TLS_SHUTDOWN_TIMEOUT = 5.0
# After this many client connections ended, free heap goes back to the kernel (memory.py), at most
# once per TRIM_INTERVAL seconds: a burst of stalled clients cut at their deadline leaves no RSS.
TRIM_AFTER_ENDS = 256
TRIM_INTERVAL = 10.0
# Every this many accepts, every source's closed transports are dropped, so addresses that never
# come back do not pile up in the per-source table.
PRUNE_EVERY = 1024


@dataclass(frozen=True, slots=True)
class ConnContext:
    """Who is on a client connection and where it asked to go."""

    client: str
    target_host: str | None = None  # CONNECT target (intercepted tunnels only)
    target_port: int | None = None
    # Who the client proved to be: at the CONNECT (Proxy-Authorization), or by the client
    # certificate of the TLS listener; None when client authentication is off or not yet known.
    identity: Identity | None = None
    sni: str | None = None  # the server name the client sent in an intercepted tunnel's handshake
    secure: bool = False  # accepted on the TLS listener

    @property
    def target(self) -> str | None:
        if self.target_host is None:
            return None
        if self.target_port in (None, 443):
            return self.target_host
        return f"{self.target_host}:{self.target_port}"


class ConnectRefused(Exception):
    """A CONNECT the appliance will not serve; ``status`` and one-line ``reason`` go to the client.

    ``phrase``: a reason phrase for the status line instead of the standard one (a 407's says what
    to do: Go clients show only that); ``headers``: extra response headers (a challenge)."""

    def __init__(
        self, status: int, reason: str, *, phrase: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.phrase = phrase
        self.headers = headers or {}


# (host, port) -> an SSL context for an intercepted host, or None when the host is not intercepted.
InterceptLookup = Callable[[str, int], Awaitable[ssl.SSLContext | None]]
# (host, port, client reader, client writer, context) -> serves a blind tunnel until it ends.
TunnelServe = Callable[[str, int, "TunnelIO"], Awaitable[None]]
Handler = Callable[[web.BaseRequest, ConnContext], Awaitable[web.StreamResponse]]
# (CONNECT head, client address, certificate identity, proxy URL to suggest) -> the identity on the
# tunnel (None: authentication off); raises ConnectRefused (407) when the client must authenticate.
ConnectIdentify = Callable[[bytes, str, Identity | None, str], Awaitable[Identity | None]]


async def _no_identity(_head: bytes, _client: str, bound: Identity | None, _url: str) -> Identity | None:
    return bound


@dataclass(slots=True)
class TunnelIO:
    """The client side of a blind tunnel, as streams; ``send_ok`` writes the 200 when ready."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    client: str
    identity: Identity | None = None  # who opened the tunnel (for the tunnel ACL), None: auth off

    async def send_ok(self) -> None:
        self.writer.write(CONNECT_OK)
        await self.writer.drain()

    async def refuse(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        self.writer.write(_plain_response(status, reason, headers=headers))
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        self.writer.close()


@dataclass
class FrontDoor:
    """Accepts client connections and routes them; the only place that owns client sockets."""

    handler: Handler
    intercept: InterceptLookup
    tunnel: TunnelServe
    timeouts: Timeouts
    limits: Limits = field(default_factory=Limits)
    floor: ClientFloor = field(default_factory=ClientFloor)  # who may connect at all; swapped on reload
    identify: ConnectIdentify = _no_identity  # who is on a CONNECT (Proxy-Authorization), before routing
    tls_handshake_timeout: float = 30.0
    # A verified client certificate's identity name -> the identity (None: not one the appliance knows).
    certificate_identity: Callable[[str | None], Identity | None] = lambda _name: None
    _http: web.Server = field(init=False)
    _servers: list[asyncio.Server] = field(init=False, default_factory=list)
    _tasks: OwnedTasks = field(init=False, default_factory=OwnedTasks)
    # Tunnels keep their StreamWriters referenced here for their whole life (see module doc).
    _tunnel_writers: set[asyncio.StreamWriter] = field(init=False, default_factory=set)
    # Client address -> its raw transports.  A transport is swapped between protocols (aiohttp,
    # start_tls, tunnels), so the count follows the socket itself: a closing one no longer counts.
    _sources: dict[str, set[asyncio.BaseTransport]] = field(init=False, default_factory=dict)
    _open: int = field(init=False, default=0)
    refused_over_limit: int = field(init=False, default=0)
    refused_by_floor: int = field(init=False, default=0)
    head_timeouts: int = field(init=False, default=0)
    _ended_waiters: list[asyncio.Future[None]] = field(init=False, default_factory=list)
    _ends_since_trim: int = field(init=False, default=0)
    _trim: asyncio.TimerHandle | None = field(init=False, default=None)
    _last_trim: float = field(init=False, default=0.0)
    _admitted: int = field(init=False, default=0)
    _refusal_logged: float = field(init=False, default=float("-inf"))
    _refusals_unlogged: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._handler_options: dict[str, Any] = {
            "keepalive_timeout": self.timeouts.keepalive,
            "max_line_size": 8190,
            "max_field_size": 8190,
            # Every request already yields one event and one access-log line of our own.
            "access_log": None,
        }
        self._http = web.Server(self._dispatch, **self._handler_options)

    # -- lifecycle -------------------------------------------------------------------------------

    async def listen(
        self, host: str, port: int, *, tls: ssl.SSLContext | None = None
    ) -> list[tuple[str, int]]:
        """Accept clients on host:port; with ``tls``, the connection is TLS from its first byte."""
        loop = asyncio.get_running_loop()
        hosts: str | list[str] | None = None if host in ("", "*") else host
        factory: Callable[[], asyncio.Protocol]
        if tls is None:
            factory = lambda: FrontDoorProtocol(self)  # noqa: E731
        else:
            factory = lambda: _TlsAccept(self, tls, self.certificate_identity)  # noqa: E731
        server = await loop.create_server(factory, hosts, port, backlog=1024)
        self._servers.append(server)
        return [sock.getsockname()[:2] for sock in server.sockets]

    async def close(self, grace: float = 5.0) -> None:
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None
        for server in self._servers:
            server.close()
        for writer in list(self._tunnel_writers):
            writer.close()
        await self._http.shutdown(grace)
        await self._tasks.cancel_all(grace)
        for server in self._servers:
            await server.wait_closed()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    def reconfigure(self, timeouts: Timeouts, limits: Limits) -> None:
        """Hot reload: new deadlines and limits apply to connections accepted from now on."""
        self.timeouts = timeouts
        self.limits = limits
        self._handler_options["keepalive_timeout"] = timeouts.keepalive

    # -- limits ----------------------------------------------------------------------------------

    def admit(self, transport: asyncio.BaseTransport, source: str) -> str | None:
        """Count a new connection from ``source`` (an IP address), or say why it is refused."""
        self._admitted += 1
        if self._admitted % PRUNE_EVERY == 0 or self._open >= self.limits.max_connections:
            self._prune_all()
        if self._open >= self.limits.max_connections:
            return f"the appliance holds {self._open} connections, its limit (max_connections)"
        live = self._prune(source)
        if len(live) >= self.limits.connections_per_source:
            return f"{len(live)} connections from {source} already, the limit (connections_per_source)"
        live.add(transport)
        self._sources[source] = live
        self._open += 1
        return None

    def refused(self, client: str, reason: str, *, count: bool = True) -> None:
        """Count a connection refused at accept; log at most one line per 10 s (a flood is likely)."""
        if count:
            self.refused_over_limit += 1
        self._refusals_unlogged += 1
        now = asyncio.get_running_loop().time()
        if now - self._refusal_logged >= 10.0:
            log.warning(
                "connection from %s refused: %s (%d refused since the last such line)",
                client,
                reason,
                self._refusals_unlogged,
            )
            self._refusal_logged = now
            self._refusals_unlogged = 0

    def floor_refused(self, client: str) -> None:
        """Count a connection the network floor closed; log like ``refused`` (a scan is likely)."""
        self.refused_by_floor += 1
        self.refused(client, "source address not allowed (allow_clients)", count=False)

    def connections(self) -> dict[str, int]:
        """Open client connections per source address (closing ones dropped)."""
        self._prune_all()
        return {source: len(live) for source, live in self._sources.items()}

    def ended(self) -> None:
        """A client connection's socket is gone (its last protocol saw ``connection_lost``)."""
        waiters, self._ended_waiters = self._ended_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._ends_since_trim += 1
        if self._ends_since_trim >= TRIM_AFTER_ENDS and self._trim is None:
            loop = asyncio.get_running_loop()
            wait = max(1.0, self._last_trim + TRIM_INTERVAL - loop.time())
            self._trim = loop.call_later(wait, self._release_memory)

    def _release_memory(self) -> None:
        self._trim = None
        self._ends_since_trim = 0
        self._last_trim = asyncio.get_running_loop().time()
        memory.release_free_memory()

    async def connection_ended(self) -> None:
        """Wait for the next client connection to end (for callers watching ``connections()``)."""
        waiter = asyncio.get_running_loop().create_future()
        self._ended_waiters.append(waiter)
        await waiter

    def _prune(self, source: str) -> set[asyncio.BaseTransport]:
        known = self._sources.get(source, set())
        live = {transport for transport in known if not transport.is_closing()}
        self._open -= len(known) - len(live)
        if not live:
            self._sources.pop(source, None)
        return live

    def _prune_all(self) -> None:
        for source in list(self._sources):
            live = self._prune(source)
            if live:
                self._sources[source] = live

    # -- aiohttp side ----------------------------------------------------------------------------

    def adopt_http(
        self,
        transport: asyncio.Transport,
        context: ConnContext,
        initial: bytes,
        eof: bool,
        head_deadline: float | None = None,
    ) -> None:
        """Give a connection (plain or decrypted) to the aiohttp server, with bytes already read.

        ``head_deadline`` (loop time): when the first request head must be complete; default one
        head timeout from now.
        """
        loop = asyncio.get_running_loop()
        protocol = _ContextHandler(self._http, context, self, loop=loop, **self._handler_options)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if initial:
            protocol.data_received(initial)
        protocol.arm_head(
            head_deadline if head_deadline is not None else loop.time() + self.timeouts.client_header
        )
        if eof:
            protocol.eof_received()

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        context = getattr(request.protocol, "context", None)
        if not isinstance(context, ConnContext):
            peer = request.transport.get_extra_info("peername") if request.transport else None
            context = ConnContext(client=_peer_str(peer))
        return await self.handler(request, context)

    # -- CONNECT ---------------------------------------------------------------------------------

    async def handle_connect(
        self,
        transport: asyncio.Transport,
        head: bytes,
        rest: bytes,
        client: str,
        bound: Identity | None = None,
        secure: bool = False,
    ) -> None:
        """Serve one CONNECT: the target, then who is asking, then intercept or tunnel.

        ``bound``: the identity of the client certificate on the TLS listener; ``secure``: the
        CONNECT came over the TLS listener (the 407 hint then says https://).
        """
        try:
            host, port = parse_connect_target(head)
            identity = await self.identify(head, client, bound, _proxy_url(transport, secure))
            context = await self.intercept(host, port)
        except ConnectRefused as exc:
            _refuse(transport, exc.status, exc.reason, phrase=exc.phrase, headers=exc.headers)
            log.info("CONNECT refused from %s: %s", client, exc.reason)
            return
        if context is None:
            await self._blind_tunnel(transport, host, port, rest, client, identity)
            return
        await self._intercept(transport, context, host, port, rest, client, identity, secure)

    async def _intercept(
        self,
        transport: asyncio.Transport,
        context: ssl.SSLContext,
        host: str,
        port: int,
        rest: bytes,
        client: str,
        identity: Identity | None = None,
        secure: bool = False,
    ) -> None:
        if rest:
            # A client that pipelines its ClientHello behind CONNECT before our 200: asyncio's
            # start_tls cannot be handed bytes already read, so refuse rather than corrupt TLS.
            _refuse(transport, 400, "data sent before the CONNECT was answered")
            return
        loop = asyncio.get_running_loop()
        buffering = _Buffering()
        transport.set_protocol(buffering)
        transport.write(CONNECT_OK)
        try:
            tls = await loop.start_tls(
                transport,
                buffering,
                context,
                server_side=True,
                ssl_handshake_timeout=self.tls_handshake_timeout,
                # A client that never answers our close_notify keeps the socket only this long.
                ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("TLS handshake with %s for %s:%d failed: %s", client, host, port, exc)
            transport.abort()
            return
        if tls is None:  # the client went away during the handshake
            return
        sni = getattr(tls.get_extra_info("ssl_object"), SNI_ATTRIBUTE, None)
        ctx = ConnContext(
            client=client,
            target_host=host,
            target_port=port,
            identity=identity,
            sni=sni if isinstance(sni, str) else None,
            secure=secure,
        )
        # The head deadline starts again inside the tunnel: the handshake had its own.
        self.adopt_http(tls, ctx, bytes(buffering.buffer), buffering.eof)

    async def _blind_tunnel(
        self,
        transport: asyncio.Transport,
        host: str,
        port: int,
        rest: bytes,
        client: str,
        identity: Identity | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=256 * 1024, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        if rest:
            reader.feed_data(rest)
        transport.resume_reading()
        self._tunnel_writers.add(writer)
        try:
            await self.tunnel(host, port, TunnelIO(reader, writer, client, identity))
        finally:
            self._tunnel_writers.discard(writer)
            if not writer.is_closing():
                writer.close()
            self.ended()


class _ContextHandler(RequestHandler):
    """aiohttp's per-connection protocol, carrying who is on the connection and where it goes.

    It also enforces the head deadline, which aiohttp lacks: a timer runs from the first byte of a
    request head (or from the connection's start, for the first) and, if no whole request has been
    parsed when it fires, the client gets ``408`` and the connection closes.  Bytes that arrive
    while a request is being handled (its body) never start it.
    """

    __slots__ = ("_door", "_head_count", "_head_timer", "context")

    def __init__(self, server: web.Server, context: ConnContext, door: FrontDoor, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self.context = context
        self._door = door
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_count = 0

    def arm_head(self, deadline: float) -> None:
        """Start the head deadline unless a whole request is already in (or being handled)."""
        if self.transport is None or self._request_in_progress or self._request_count:
            return
        self._arm(deadline, self._request_count)

    def _arm(self, deadline: float, count: int) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_count = count
        self._head_timer = self._loop.call_at(deadline, self._head_expired)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_in_progress or self._request_count != before or self.transport is None:
            return
        if self._head_timer is None or self._head_count != before:
            # The first byte of a new head (the timer, if any, was for a head since completed).
            self._arm(self._loop.time() + self._door.timeouts.client_header, before)

    def _head_expired(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or self._request_in_progress or self._request_count != self._head_count:
            return
        self._door.head_timeouts += 1
        log.info("%s: request head not complete in time, closing", self.context.client)
        transport.write(_plain_response(408, "request head not received in time"))
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)
        self._door.ended()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # A request aiohttp's parser refused is the client's mistake, not ours: one escaped
        # WARNING line (aiohttp would log it at ERROR with a traceback).  Anything else stays loud.
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            log.warning("bad HTTP request from %s: %s", self.context.client, shown(str(exc), 300))
            return
        super().log_exception(*args, **kw)


class FrontDoorProtocol(asyncio.Protocol):
    """Reads just enough of a new connection to route it."""

    def __init__(self, door: FrontDoor, identity: Identity | None = None, secure: bool = False) -> None:
        self.door = door
        self.identity = identity  # from the TLS listener's client certificate
        self.secure = secure
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.client = "-"
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its interface.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = _peer_str(peer)
        if not self.door.floor.allows(_source(peer)):
            self.done = True
            self.door.floor_refused(self.client)
            _refuse(self.transport, 403, "your address may not use this appliance (allow_clients)")
            return
        refusal = self.door.admit(transport, _source(peer))
        if refusal is not None:
            self.done = True
            self.door.refused(self.client, refusal)
            _refuse(self.transport, 503, refusal)
            return
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.door.timeouts.client_header
        self.timer = loop.call_at(self.deadline, self._header_timeout)

    def _header_timeout(self) -> None:
        if not self.done and self.transport is not None:
            self.done = True
            _refuse(self.transport, 408, "request head not received in time")

    def data_received(self, data: bytes) -> None:
        if self.done or self.transport is None:
            return
        self.buffer += data
        if len(self.buffer) < 8 and b"CONNECT ".startswith(bytes(self.buffer)):
            return  # not enough to tell yet
        if not self.buffer.startswith(b"CONNECT "):
            self._hand_over(eof=False)
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end > MAX_CONNECT_HEAD or (end < 0 and len(self.buffer) > MAX_CONNECT_HEAD):
            self.done = True
            self._cancel_timer()
            _refuse(self.transport, 431, "CONNECT request head too large")
            return
        if end < 0:
            return
        self.done = True
        self._cancel_timer()
        head, rest = bytes(self.buffer[:end]), bytes(self.buffer[end + 4 :])
        self.buffer.clear()
        self.transport.pause_reading()
        transport = self.transport
        self.door.spawn(self._connect(transport, head, rest))

    async def _connect(self, transport: asyncio.Transport, head: bytes, rest: bytes) -> None:
        # Reading stays paused until the next protocol is in place (start_tls resumes it itself).
        try:
            await self.door.handle_connect(transport, head, rest, self.client, self.identity, self.secure)
        except (ConnectionError, OSError) as exc:
            log.debug("CONNECT from %s ended: %s", self.client, exc)
            transport.abort()

    def _hand_over(self, eof: bool) -> None:
        assert self.transport is not None
        self.done = True
        self._cancel_timer()
        data = bytes(self.buffer)
        self.buffer.clear()
        # The head deadline keeps running from the connection's start: handing over is no reset.
        context = ConnContext(client=self.client, identity=self.identity, secure=self.secure)
        self.door.adopt_http(self.transport, context, data, eof, self.deadline)

    def eof_received(self) -> bool | None:
        if not self.done and self.buffer and self.transport is not None:
            self._hand_over(eof=True)
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.done = True
        self.door.ended()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _TlsAccept(asyncio.Protocol):
    """A TLS listener's connection until its handshake is done: the floor first, then ``start_tls``,
    then the decrypted stream goes to a ``FrontDoorProtocol`` as if it had been accepted so."""

    def __init__(
        self, door: FrontDoor, tls: ssl.SSLContext, identify: Callable[[str | None], Identity | None]
    ) -> None:
        self.door = door
        self.tls = tls
        self.identify = identify  # the identity a verified client certificate names
        self.buffering = _Buffering()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)
        peer = raw.get_extra_info("peername")
        if not self.door.floor.allows(_source(peer)):
            # Nothing to say in clear on a TLS port: close before the ClientHello is read.
            self.door.floor_refused(_peer_str(peer))
            raw.abort()
            return
        # Not a byte is read until start_tls has its protocol in place (it resumes reading).
        raw.pause_reading()
        self.door.spawn(self._handshake(raw, _peer_str(peer)))

    async def _handshake(self, raw: asyncio.Transport, client: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                raw,
                self.buffering,
                self.tls,
                server_side=True,
                ssl_handshake_timeout=self.door.tls_handshake_timeout,
                ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.debug("TLS handshake with %s failed: %s", client, exc)
            raw.abort()
            return
        if tls is None:
            return
        peer = tls.get_extra_info("peercert")
        protocol = FrontDoorProtocol(self.door, self.identify(identity_of_peer(peer)), secure=True)
        tls.set_protocol(protocol)
        protocol.connection_made(tls)
        if self.buffering.buffer:
            protocol.data_received(bytes(self.buffering.buffer))
        if self.buffering.eof:
            protocol.eof_received()


class _Buffering(asyncio.Protocol):
    """Sits under start_tls and keeps decrypted bytes that arrive before aiohttp takes over."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data

    def eof_received(self) -> bool | None:
        self.eof = True
        return True


def parse_connect_target(head: bytes) -> tuple[str, int]:
    """``CONNECT host:port HTTP/1.1`` -> (host, port); ConnectRefused(400) on anything else."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise ConnectRefused(400, "malformed CONNECT request line")
    try:
        target = parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise ConnectRefused(400, "CONNECT target is not ASCII") from None
    if target.startswith("["):
        end = target.find("]")
        host, port_text = target[1:end], target[end + 2 :] if end > 0 else ""
        if end < 0 or target[end + 1 : end + 2] != ":":
            raise ConnectRefused(400, f"CONNECT target {target!r} needs host:port")
    else:
        host, sep, port_text = target.rpartition(":")
        if not sep:
            raise ConnectRefused(400, f"CONNECT target {target!r} needs host:port")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConnectRefused(400, f"CONNECT target {target!r} has an invalid port")
    if not host or len(host) > 253 or not host.isprintable() or any(c in host for c in "/@?#\\ \t"):
        raise ConnectRefused(400, f"CONNECT target {target!r} is not a host name")
    return host.lower().rstrip("."), int(port_text)


_REASONS = {
    400: "Bad Request",
    407: "Proxy Authentication Required",
    503: "Service Unavailable",
    403: "Forbidden",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


def _plain_response(
    status: int, reason: str, *, phrase: str | None = None, headers: dict[str, str] | None = None
) -> bytes:
    body = (reason + "\n").encode("utf-8", "replace")
    # A status line and header values are one line of printable ASCII, whatever we were given.
    line = shown(phrase or _REASONS.get(status, "Error"), 300)
    extra = "".join(f"{name}: {shown(value, 1000)}\r\n" for name, value in (headers or {}).items())
    return (
        f"HTTP/1.1 {status} {line}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii", "replace") + body


def _refuse(
    transport: asyncio.Transport,
    status: int,
    reason: str,
    *,
    phrase: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    if transport.is_closing():
        return
    transport.write(_plain_response(status, reason, phrase=phrase, headers=headers))
    transport.close()


def _proxy_url(transport: asyncio.BaseTransport, secure: bool) -> str:
    """The proxy URL a client should use, with placeholders for its credentials (for a 407)."""
    sock = transport.get_extra_info("sockname")
    address = _peer_str(sock) if isinstance(sock, tuple) else "APPLIANCE:3128"
    return f"{'https' if secure else 'http'}://USER:PASSWORD@{address}"


def _source(peer: object) -> str:
    """The client's address alone: the unit the per-source limit counts."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "-"


def _peer_str(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return "-"
