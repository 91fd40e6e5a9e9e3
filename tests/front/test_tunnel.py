"""Tunnels through real loopback sockets: connect, splice both ways, half-close, idle timeout."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from appliance.errors import UpstreamError
from appliance.front.tunnel import TunnelEnd, TunnelStats, open_upstream, pipe_tunnel, splice

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A loopback server; on exit its connection handlers get a moment to finish, then are cancelled."""
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        if handlers:
            _, pending = await asyncio.wait(handlers, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def count_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads until the client half-closes, then answers how much it got: needs half-close to work."""
    total = 0
    while data := await reader.read(65536):
        total += len(data)
    writer.write(f"got {total}".encode())
    await writer.drain()
    writer.close()


@asynccontextmanager
async def tunnel_front(
    upstream_port: int, *, idle_timeout: float = 10.0, first_bytes: bytes = b""
) -> AsyncIterator[tuple[int, asyncio.Future[TunnelStats]]]:
    """A minimal front door: every connection is tunnelled to the upstream via ``pipe_tunnel``."""
    stats: asyncio.Future[TunnelStats] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        result = await pipe_tunnel(
            reader,
            writer,
            ["127.0.0.1"],
            upstream_port,
            connect_timeout=5,
            idle_timeout=idle_timeout,
            first_bytes=first_bytes,
        )
        stats.set_result(result)

    async with serving(handle) as port:
        yield port, stats


async def test_bytes_flow_both_ways_and_are_counted() -> None:
    async with serving(echo) as upstream, tunnel_front(upstream) as (front, stats):
        reader, writer = await asyncio.open_connection("127.0.0.1", front)
        writer.write(b"hello tunnel")
        await writer.drain()
        assert await reader.readexactly(12) == b"hello tunnel"
        writer.write_eof()
        assert await reader.read() == b""  # echo closes after our EOF: the tunnel passes that on
        writer.close()
        result = await asyncio.wait_for(stats, 5)
    assert (result.bytes_up, result.bytes_down) == (12, 12)
    assert result.end is TunnelEnd.CLOSED and result.error is None


async def test_a_client_half_close_still_gets_the_answer() -> None:
    async with serving(count_then_answer) as upstream, tunnel_front(upstream) as (front, stats):
        reader, writer = await asyncio.open_connection("127.0.0.1", front)
        writer.write(b"x" * 100_000)
        writer.write_eof()
        async with asyncio.timeout(5):
            assert await reader.read() == b"got 100000"
        writer.close()
        result = await asyncio.wait_for(stats, 5)
    assert result.bytes_up == 100_000 and result.bytes_down == len(b"got 100000")
    assert result.end is TunnelEnd.CLOSED


async def test_first_bytes_go_upstream_before_the_rest() -> None:
    async with (
        serving(count_then_answer) as upstream,
        tunnel_front(upstream, first_bytes=b"abc") as (front, stats),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", front)
        writer.write(b"defg")
        writer.write_eof()
        async with asyncio.timeout(5):
            assert await reader.read() == b"got 7"
        writer.close()
        assert (await asyncio.wait_for(stats, 5)).bytes_up == 7


async def test_an_idle_tunnel_is_closed_on_both_sides() -> None:
    upstream_saw_eof = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # returns once the tunnel drops us
        upstream_saw_eof.set()
        writer.close()

    async with serving(silent) as upstream, tunnel_front(upstream, idle_timeout=0.3) as (front, stats):
        reader, writer = await asyncio.open_connection("127.0.0.1", front)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
            await upstream_saw_eof.wait()
        writer.close()
        result = await asyncio.wait_for(stats, 5)
    assert result.end is TunnelEnd.IDLE
    assert 0.25 < result.seconds < 4


async def test_traffic_keeps_a_tunnel_alive_past_the_idle_timeout() -> None:
    async with serving(echo) as upstream, tunnel_front(upstream, idle_timeout=0.4) as (front, stats):
        reader, writer = await asyncio.open_connection("127.0.0.1", front)
        for _ in range(6):  # 6 x 0.15s = 0.9s in total, more than twice the idle timeout
            writer.write(b"ping")
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
            await asyncio.sleep(0.15)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        result = await asyncio.wait_for(stats, 5)
    assert result.end is TunnelEnd.CLOSED and result.bytes_up == 24


async def test_a_big_transfer_to_a_slow_reader_arrives_intact() -> None:
    payload = os.urandom(8 * 1024 * 1024)

    async def sender(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for offset in range(0, len(payload), 1 << 20):
            writer.write(payload[offset : offset + (1 << 20)])
            await writer.drain()
        writer.close()

    async with serving(sender) as upstream, tunnel_front(upstream) as (front, stats):
        reader, writer = await asyncio.open_connection("127.0.0.1", front, limit=16 * 1024)
        digest = hashlib.sha256()
        received = 0
        async with asyncio.timeout(60):
            while chunk := await reader.read(16 * 1024):
                digest.update(chunk)
                received += len(chunk)
                if received % (1 << 20) < len(chunk):
                    await asyncio.sleep(0.02)  # a slow reader: the tunnel must wait, not buffer
        writer.close()
        result = await asyncio.wait_for(stats, 10)
    assert received == len(payload)
    assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
    assert result.bytes_down == len(payload)


async def test_an_upstream_reset_ends_the_tunnel_as_an_upstream_error() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # linger 0: the close sends a RST

    async with serving(reset) as upstream, tunnel_front(upstream) as (front, stats):
        reader, writer = await asyncio.open_connection("127.0.0.1", front)
        writer.write(b"hello")
        await writer.drain()
        async with asyncio.timeout(5):
            with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
                await reader.readexactly(1)
        writer.close()
        result = await asyncio.wait_for(stats, 5)
    assert result.end is TunnelEnd.UPSTREAM_ERROR
    assert result.error is not None and result.error.startswith("upstream")


async def test_cancelling_a_splice_closes_both_sides() -> None:
    upstream_closed = asyncio.Event()

    async def wait_for_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        upstream_closed.set()

    splices: asyncio.Queue[asyncio.Task[TunnelStats]] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await open_upstream(["127.0.0.1"], upstream, 5)
        task = asyncio.create_task(splice(reader, writer, up_reader, up_writer, 30))
        await splices.put(task)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async with serving(wait_for_close) as upstream, serving(handle) as front:
        reader, writer = await asyncio.open_connection("127.0.0.1", front)
        task = await asyncio.wait_for(splices.get(), 5)
        task.cancel()  # e.g. the appliance shutting down
        async with asyncio.timeout(5):
            assert await reader.read() == b""
            await upstream_closed.wait()
        assert task.cancelled()
        writer.close()


# --- connecting ---------------------------------------------------------------------------------


async def test_a_closed_port_is_a_clear_upstream_error() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with pytest.raises(UpstreamError) as caught:
        await open_upstream(["127.0.0.1"], port, 5, name="example.test:443")
    assert caught.value.registry == "example.test:443"
    assert "Connection refused" in caught.value.message


async def test_ipv6_failing_falls_back_to_ipv4() -> None:
    async with serving(echo, host="127.0.0.1") as port:
        # ::1 has nothing on this port (or no IPv6 at all): the IPv4 address must still win.
        reader, writer = await open_upstream(["::1", "127.0.0.1"], port, 5)
        writer.write(b"v4")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"v4"
        assert writer.get_extra_info("peername")[0] == "127.0.0.1"
        writer.close()


@contextlib.contextmanager
def unanswering(host: str, port: int) -> Iterator[int]:
    """A listener whose accept queue is full, so further SYNs are dropped: connects just hang."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind((host, port))
        listener.listen(0)
        bound = listener.getsockname()[1]
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex((host, bound))
            fillers.append(filler)
        time.sleep(0.1)
        yield bound
    finally:
        for sock in (*fillers, listener):
            sock.close()


async def test_an_unanswering_address_does_not_cost_the_whole_timeout() -> None:
    async with serving(echo) as port:
        with unanswering("127.0.0.2", port):
            loop = asyncio.get_running_loop()
            started = loop.time()
            _reader, writer = await open_upstream(["127.0.0.2", "127.0.0.1"], port, 10, stagger=0.1)
            assert loop.time() - started < 5
            assert writer.get_extra_info("peername")[0] == "127.0.0.1"
            writer.close()


async def test_nothing_answering_times_out_with_the_limit_in_the_message() -> None:
    with unanswering("127.0.0.2", 0) as port, pytest.raises(UpstreamError) as caught:
        await open_upstream(["127.0.0.2"], port, 0.3)
    assert "timed out after 0.3s" in caught.value.message


async def test_a_host_name_is_refused_so_no_second_dns_lookup_happens() -> None:
    with pytest.raises(ValueError):
        await open_upstream(["localhost"], 443, 1)
