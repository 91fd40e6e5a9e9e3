"""Tunnels for CONNECTs the appliance does not intercept: dial the checked addresses, splice bytes.

Two steps, because the front door answers ``200 Connection established`` only once the upstream
connection exists (and ``502`` when it cannot be made): ``open_upstream`` dials, ``splice`` copies
bytes both ways until both sides are done.  ``pipe_tunnel`` does both for callers that need no
answer in between.

``open_upstream`` dials exactly the addresses the tunnel policy checked (never a host name: no
second DNS lookup), racing them Happy-Eyeballs style (RFC 8305): families interleaved, the next
attempt starting when the previous one fails or after a short stagger, so an unreachable IPv6
address does not cost the whole connect timeout (the seed's issue #108).

``splice`` holds at most one chunk per direction plus the transports' own bounded buffers: each
write is followed by ``drain()``, so a slow reader slows the writer instead of filling memory.  An
EOF from one side is passed on as a half-close (``write_eof``) and the other direction keeps going;
the tunnel ends when both directions are done, on an error, or after ``idle_timeout`` seconds
without a byte moving either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from appliance.errors import UpstreamError

CHUNK_SIZE = 64 * 1024
DEFAULT_STAGGER = 0.25  # RFC 8305's recommended connection attempt delay
_CLOSE_TIMEOUT = 5.0


class TunnelEnd(StrEnum):
    """Why a tunnel ended."""

    CLOSED = "closed"  # both sides finished sending
    IDLE = "idle timeout"
    CLIENT_ERROR = "client error"
    UPSTREAM_ERROR = "upstream error"


@dataclass(frozen=True, slots=True)
class TunnelStats:
    bytes_up: int  # client -> upstream, including ``first_bytes``
    bytes_down: int  # upstream -> client
    seconds: float
    end: TunnelEnd
    error: str | None = None  # for CLIENT_ERROR / UPSTREAM_ERROR: what happened, one line


async def open_upstream(
    addresses: Sequence[str],
    port: int,
    connect_timeout: float,
    *,
    name: str | None = None,
    stagger: float = DEFAULT_STAGGER,
    limit: int = CHUNK_SIZE,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the first of ``addresses`` that answers on ``port``, within ``connect_timeout`` s.

    Raises ``UpstreamError`` (registry = ``name`` or the target) naming each address's failure, and
    ``ValueError`` when an address is not an IP literal.
    """
    target = name or _target(addresses, port)
    if not addresses:
        raise UpstreamError(target, "no addresses to connect to")
    for address in addresses:
        # A host name here would be resolved again by the socket layer, undoing the policy check.
        ipaddress.ip_address(address)
    errors: list[str] = []
    try:
        async with asyncio.timeout(connect_timeout):
            sock = await _race(_interleave(addresses), port, stagger, errors)
    except TimeoutError:
        tried = f" ({'; '.join(errors)})" if errors else ""
        raise UpstreamError(target, f"connect timed out after {connect_timeout:g}s{tried}") from None
    except OSError:
        raise UpstreamError(target, f"cannot connect: {'; '.join(errors)}") from None
    try:
        return await asyncio.open_connection(sock=sock, limit=limit)
    except BaseException:
        sock.close()
        raise


async def splice(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
    idle_timeout: float,
    *,
    first_bytes: bytes = b"",
    chunk_size: int = CHUNK_SIZE,
) -> TunnelStats:
    """Copy bytes both ways until both sides are done; close both sides; say what flowed.

    ``first_bytes``: bytes the front door already read from the client past the CONNECT request.
    Cancelling the call closes both sides too.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    activity = _Activity(started)
    up = asyncio.create_task(
        _pump(client_reader, upstream_writer, activity, chunk_size, first_bytes, ("client", "upstream")),
        name="tunnel up",
    )
    down = asyncio.create_task(
        _pump(upstream_reader, client_writer, activity, chunk_size, b"", ("upstream", "client")),
        name="tunnel down",
    )
    pending: set[asyncio.Task[None]] = {up, down}
    end = TunnelEnd.CLOSED
    error: str | None = None
    try:
        while pending:
            remaining = activity.last + idle_timeout - loop.time()
            if remaining <= 0:
                end = TunnelEnd.IDLE
                break
            done, pending = await asyncio.wait(
                pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            failure = next((t.exception() for t in done if t.exception() is not None), None)
            if isinstance(failure, _PumpError):
                end = TunnelEnd.CLIENT_ERROR if failure.side == "client" else TunnelEnd.UPSTREAM_ERROR
                error = failure.detail
                break
            if failure is not None:
                raise failure
    finally:
        clean = end is TunnelEnd.CLOSED and not pending
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(_close(client_writer, clean), _close(upstream_writer, clean))
    return TunnelStats(
        bytes_up=activity.bytes_up,
        bytes_down=activity.bytes_down,
        seconds=loop.time() - started,
        end=end,
        error=error,
    )


async def pipe_tunnel(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    addresses: Sequence[str],
    port: int,
    *,
    connect_timeout: float,
    idle_timeout: float,
    first_bytes: bytes = b"",
) -> TunnelStats:
    """``open_upstream`` then ``splice``.  A failed connect raises ``UpstreamError``, client left open."""
    upstream_reader, upstream_writer = await open_upstream(addresses, port, connect_timeout)
    return await splice(
        client_reader, client_writer, upstream_reader, upstream_writer, idle_timeout, first_bytes=first_bytes
    )


class _Activity:
    """When bytes last moved, and how many each way (shared by both pumps and the idle watch)."""

    __slots__ = ("bytes_down", "bytes_up", "last")

    def __init__(self, now: float) -> None:
        self.last = now
        self.bytes_up = 0
        self.bytes_down = 0

    def moved(self, direction: tuple[str, str], count: int) -> None:
        self.last = asyncio.get_running_loop().time()
        if direction[0] == "client":
            self.bytes_up += count
        else:
            self.bytes_down += count


class _PumpError(Exception):
    def __init__(self, side: str, exc: BaseException) -> None:
        super().__init__(side)
        self.side = side
        self.detail = f"{side}: {_describe(exc)}"


async def _pump(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    activity: _Activity,
    chunk_size: int,
    first: bytes,
    direction: tuple[str, str],
) -> None:
    source_side, sink_side = direction
    data = first
    while True:
        if data:
            try:
                sink.write(data)
                await sink.drain()
            except OSError as exc:
                raise _PumpError(sink_side, exc) from exc
            activity.moved(direction, len(data))
        try:
            data = await source.read(chunk_size)
        except OSError as exc:
            raise _PumpError(source_side, exc) from exc
        if not data:
            break
        activity.last = asyncio.get_running_loop().time()
    # Half-close: the peer may still be sending (a request body done, the response still coming).
    if sink.can_write_eof():
        try:
            sink.write_eof()
        except OSError as exc:
            raise _PumpError(sink_side, exc) from exc


async def _close(writer: asyncio.StreamWriter, clean: bool) -> None:
    if clean:
        writer.close()
    else:
        # An idle or broken tunnel has nothing worth flushing: drop it now.
        writer.transport.abort()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()


def _interleave(addresses: Sequence[str]) -> list[str]:
    """Alternate address families, starting with the first address's (RFC 8305 section 4)."""
    first_v6 = ":" in addresses[0]
    same = [a for a in addresses if (":" in a) == first_v6]
    other = [a for a in addresses if (":" in a) != first_v6]
    ordered: list[str] = []
    for index in range(max(len(same), len(other))):
        ordered.extend(group[index] for group in (same, other) if index < len(group))
    return ordered


async def _race(addresses: list[str], port: int, stagger: float, errors: list[str]) -> socket.socket:
    """The first socket to connect; the next attempt starts on a failure or after ``stagger``."""
    queue = list(addresses)
    running: dict[asyncio.Task[socket.socket], str] = {}
    winner: socket.socket | None = None
    try:
        while winner is None and (queue or running):
            if queue:
                address = queue.pop(0)
                running[asyncio.create_task(_connect_one(address, port), name=f"connect {address}")] = address
            done, _ = await asyncio.wait(
                running, timeout=stagger if queue else None, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                address = running.pop(task)
                exc = task.exception()
                if exc is not None:
                    errors.append(f"{_target([address], port)}: {_describe(exc)}")
                elif winner is None:
                    winner = task.result()
                else:
                    task.result().close()
        if winner is None:
            raise OSError("no address answered")
        return winner
    finally:
        for task in running:
            task.cancel()
        for result in await asyncio.gather(*running, return_exceptions=True):
            if isinstance(result, socket.socket):
                result.close()


async def _connect_one(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _target(addresses: Sequence[str], port: int) -> str:
    shown = [f"[{a}]" if ":" in a else a for a in addresses[:3]]
    more = ", ..." if len(addresses) > 3 else ""
    return f"{', '.join(shown)}{more} port {port}" if len(addresses) != 1 else f"{shown[0]}:{port}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        # asyncio's connect errors carry "Connect call failed (...)" as strerror; the errno says more.
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
