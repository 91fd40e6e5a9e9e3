"""The world the fuzz tests run in: a real engine, a recording upstream, real sockets and TLS.

The engine runs on its own event loop in a thread, so the hypothesis properties stay plain
functions that talk to it the way clients do: blocking sockets, ``CONNECT`` and TLS trusting the
appliance's CA (MITM), or plain HTTP (mirror mode).  The upstream is a raw asyncio server that
records each request line exactly as it arrived (an HTTP library would refuse or normalise the very
lines the properties look for), answers ``registry.test`` in plain HTTP and its token realm
``auth.test`` in TLS, and challenges for Basic credentials so that any request carrying the
engine's credentials shows it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from appliance.config.model import (
    Config,
    Credential,
    RegistryConfig,
    ResolveOverride,
    Scheme,
    Secret,
    Timeouts,
    TunnelMode,
    TunnelPolicy,
)
from appliance.engine import Engine
from appliance.front.ca import CertificateAuthority
from appliance.front.leaf_certs import LeafCertificates

T = TypeVar("T")

REGISTRY = "registry.test"
REALM = "auth.test"
USER, PASSWORD = "fuzz-user", "fuzz-secret-3141"
OUR_BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN_KEYS = {"service", "scope", "account"}
# A request target the engine may put on the wire for the registry: a /v2/ path of plain characters
# (no dot segment, no space, no control character) and a percent-encoded query.
_API_TARGET = re.compile(r"^/v2/(?:[A-Za-z0-9._~:@=+-]+/?)*(?:\?[A-Za-z0-9._~%&=+-]*)?$")
_CLEAN_PATH = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*/?$")


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the upstream got it."""

    host: str  # the Host header
    method: str
    target: str  # the request target, byte for byte (latin-1)
    authorization: str | None


class RawUpstream:
    """A minimal HTTP/1.1 server that records request lines as they came (one request per connection)."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.tls = tls
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._servers: list[asyncio.Server] = []
        self.plain_port = 0
        self.tls_port = 0

    async def start(self) -> None:
        plain = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        secure = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self._servers = [plain, secure]
        self.plain_port = plain.sockets[0].getsockname()[1]
        self.tls_port = secure.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    def take(self) -> list[Seen]:
        with self._lock:
            seen, self.seen = self.seen, []
        return seen

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            method, target = (parts[0], " ".join(parts[1:-1])) if len(parts) >= 3 else ("?", lines[0])
            length = headers.get("content-length", "")
            if length.isdigit():
                await reader.readexactly(min(int(length), 1 << 20))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                await reader.readuntil(b"0\r\n\r\n")
            seen = Seen(headers.get("host", ""), method, target, headers.get("authorization"))
            with self._lock:
                self.seen.append(seen)
            writer.write(_answer(seen))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


def _answer(seen: Seen) -> bytes:
    path = seen.target.split("?", 1)[0]
    status, body, extra = 200, b'{"token": "t", "access_token": "t"}', ""
    if seen.host.split(":")[0] == REGISTRY:
        if seen.authorization != OUR_BASIC:
            status, body = 401, b'{"errors": [{"code": "UNAUTHORIZED", "message": "login"}]}'
            extra = f'WWW-Authenticate: Basic realm="{REGISTRY}"\r\n'
        elif path == "/v2/":
            body = b"{}"
        elif path.endswith("/tags/list"):
            name = path.removeprefix("/v2/").removesuffix("/tags/list")
            body = json.dumps({"name": name, "tags": ["b", "a", "c"]}).encode()
        else:
            status, body = 404, b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "no"}]}'
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if seen.method == "HEAD" else head + body


class LogRecords(logging.Handler):
    """Every log record of the engine while a property runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        with self._lock2:
            records, self.records = self.records, []
        return records


@dataclass
class Reply:
    status: int  # 0: the connection closed without an HTTP answer
    head: str
    body: bytes


@dataclass
class FuzzWorld:
    workdir: Path
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    logs: LogRecords = field(default_factory=LogRecords)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-engine", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self.call(self._start())
        for name in ("appliance", "aiohttp"):
            logging.getLogger(name).addHandler(self.logs)
            logging.getLogger(name).setLevel(logging.INFO)

    def stop(self) -> None:
        for name in ("appliance", "aiohttp"):
            logging.getLogger(name).removeHandler(self.logs)
        with contextlib.suppress(Exception):
            self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        base = Config(cache_dir=self.workdir / "cache", ca_dir=self.workdir / "ca")
        self.ca = CertificateAuthority.load_or_create(base.ca_cert_path, base.ca_key_path)
        self.upstream = RawUpstream(LeafCertificates(self.ca).server_context(REALM))
        await self.upstream.start()
        config = replace(
            base,
            listen_host="127.0.0.1",
            listen_port=0,
            control_socket=self.workdir / "control.sock",
            upstream_ca=base.ca_cert_path,
            registries=(RegistryConfig(host=REGISTRY, scheme=Scheme.HTTP, auth_hosts=(REALM,)),),
            credentials=(Credential(REGISTRY, USER, Secret(PASSWORD)),),
            resolve=(
                ResolveOverride(REGISTRY, None, "127.0.0.1", self.upstream.plain_port),
                ResolveOverride(REALM, None, "127.0.0.1", self.upstream.tls_port),
            ),
            tunnel=TunnelPolicy(TunnelMode.NONE),  # a CONNECT elsewhere never resolves a name
            # Raw bytes that never finish a head or a handshake wait these out: keep them short.
            timeouts=replace(Timeouts(), client_header=2.0),
        )
        self.engine = Engine(config=config, ca=self.ca)
        await self.engine.start()
        self.engine.door.tls_handshake_timeout = 2.0
        await self.engine.settled()
        self.port = self.engine.listen_addresses[0][1]

    async def _stop(self) -> None:
        await self.engine.close()
        await self.upstream.close()

    # -- clients -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _socket(self, timeout: float = 10) -> Iterator[socket.socket]:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            yield sock
        finally:
            sock.close()

    def send_raw(self, data: bytes) -> Reply:
        """Bytes as they are to the front door, then end-of-file; whatever comes back within 3 s.

        An unfinished CONNECT head followed by end-of-file is held open (no answer is owed): the
        short timeout keeps such examples from costing the run 10 s each.
        """
        with self._socket(timeout=3) as sock:
            sock.sendall(data)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            return _reply(_read_all(sock))

    def plain(self, request: bytes) -> Reply:
        """One plain-HTTP request (``Connection: close``): the answer."""
        with self._socket() as sock:
            sock.sendall(request)
            return _reply(_read_all(sock))

    def tunnelled(self, host: str, request: bytes) -> Reply:
        """``request`` inside a CONNECT tunnel to ``host``:443, over TLS trusting the appliance CA."""
        with self._socket() as sock:
            sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    return _reply(answer)
                answer += chunk
            if not answer.startswith(b"HTTP/1.1 200"):
                return _reply(answer)
            context = ssl.create_default_context(cafile=str(self.engine.config.ca_cert_path))
            with context.wrap_socket(sock, server_hostname=host) as tls:
                tls.sendall(request)
                return _reply(_read_all(tls))

    # -- what the properties check -----------------------------------------------------------------

    def check_quiet(self) -> list[logging.LogRecord]:
        """The records since the last check; fails on a traceback, an ERROR or a multi-line record."""
        records = self.logs.take()
        for record in records:
            message = record.getMessage()
            assert record.exc_info is None, f"traceback logged: {message}"
            assert record.levelno < logging.ERROR, f"{record.levelname} logged: {message}"
            assert message.isprintable(), f"unescaped client text in the log: {message!r}"
        return records

    def check_upstream(self) -> list[Seen]:
        """The upstream requests since the last check; fails on any outside the registry API."""
        seen = self.upstream.take()
        for request in seen:
            host = request.host.split(":")[0]
            path = request.target.split("?", 1)[0]
            token_request = request.method in ("GET", "HEAD") and bool(
                {key for key, _ in parse_qsl(urlsplit(request.target).query, keep_blank_values=True)}
                & TOKEN_KEYS
            )
            if host == REGISTRY and _API_TARGET.match(request.target):
                assert "/../" not in path + "/" and "/./" not in path + "/", request
                continue
            # Outside the registry API, only a token request: to the realm host (our credential
            # allowed), or to a realm on the registry's own host (ghcr.io/token; the client's own
            # Authorization only).  Either way a plain path, never a dot segment.
            assert host in (REGISTRY, REALM), request
            assert token_request or host == REALM, f"non-API request upstream: {request}"
            assert _CLEAN_PATH.match(path), f"unclean path outside the registry API: {request}"
            if request.authorization == OUR_BASIC:
                assert host == REALM and token_request, f"our credential on a non-token request: {request}"
        return seen


def _read_all(sock: socket.socket) -> bytes:
    data = bytearray()
    with contextlib.suppress(OSError, ssl.SSLError):
        while len(data) < 1 << 22:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return bytes(data)


def _reply(data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    match = re.match(r"HTTP/1\.[01] (\d{3})", text)
    return Reply(int(match.group(1)) if match else 0, text, body)
