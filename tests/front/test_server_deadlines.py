"""Slow and greedy clients cannot hold the front door (issue 15, item 3).

A real in-process engine on loopback with a 1 s head deadline: a request head that does not finish
in time gets ``408`` and the connection closes - on the plain port, inside a MITM tunnel, and on a
kept-alive connection - while an idle kept-alive connection lasts until the idle deadline.  The
per-source and global connection caps answer ``503`` at accept.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.config.model import Config, Limits, RegistryConfig, Timeouts, docker_hub
from appliance.config.toml_read import load_file
from appliance.engine import Engine
from appliance.errors import ConfigError
from appliance.front.ca import CertificateAuthority

HEAD = 1.0  # the head deadline the engine runs with here
IDLE = 2.5  # its idle (keep-alive) deadline


async def make_engine(tmp_path: Path, **changes: object) -> Engine:
    config = Config(
        listen_host="127.0.0.1",
        listen_port=0,
        cache_dir=tmp_path / "cache",
        ca_dir=tmp_path / "ca",
        control_socket=tmp_path / "control.sock",
        registries=(docker_hub(), RegistryConfig(host="registry.test")),
        timeouts=replace(Timeouts(), client_header=HEAD, keepalive=IDLE),
    )
    config = replace(config, **changes)  # type: ignore[arg-type]
    ca = await asyncio.to_thread(CertificateAuthority.load_or_create, config.ca_cert_path, config.ca_key_path)
    engine = Engine(config=config, ca=ca)
    await engine.start()
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    running = await make_engine(tmp_path)
    try:
        yield running
    finally:
        await running.close()


def port_of(engine: Engine) -> int:
    return engine.listen_addresses[0][1]


async def read_until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    """Everything until EOF (or ``limit`` seconds, then a failure), and how long it took."""
    started = time.monotonic()
    data = b""
    async with asyncio.timeout(limit):
        while chunk := await reader.read(65536):
            data += chunk
    return data, time.monotonic() - started


async def test_a_plain_request_head_that_never_finishes_is_cut_at_the_head_deadline(engine) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(engine))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # enough to tell it is not a CONNECT
    reply, took = await read_until_closed(reader, HEAD + 3)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert took < HEAD + 1
    assert engine.door.head_timeouts == 1


async def test_trickling_bytes_do_not_extend_the_head_deadline(engine) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(engine))
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\n")

    async def trickle() -> None:
        for _ in range(40):
            await asyncio.sleep(0.1)
            writer.write(b"X-Slow: 1\r\n")

    dripping = asyncio.create_task(trickle())
    try:
        reply, _ = await read_until_closed(reader, HEAD + 3)
    finally:
        dripping.cancel()
        writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < HEAD + 1


async def _mitm(engine: Engine) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """CONNECT registry.test:443 and a TLS handshake with the appliance (its CA trusted)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(engine))
    writer.write(b"CONNECT registry.test:443 HTTP/1.1\r\nHost: registry.test:443\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cadata=engine.ca.cert_pem.decode())
    await writer.start_tls(context, server_hostname="registry.test")
    return reader, writer


async def test_a_stalled_head_inside_a_mitm_tunnel_is_cut_and_its_connection_released(engine) -> None:
    reader, writer = await _mitm(engine)
    writer.write(b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\n")
    reply, took = await read_until_closed(reader, HEAD + 3)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert took < HEAD + 1
    async with asyncio.timeout(3):  # the TLS shutdown finishes, then the socket is released
        while engine.door.connections():
            await engine.door.connection_ended()


async def test_a_mitm_tunnel_that_never_sends_a_request_is_cut_at_the_head_deadline(engine) -> None:
    reader, writer = await _mitm(engine)
    reply, took = await read_until_closed(reader, HEAD + 3)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert took < HEAD + 1


async def test_kept_alive_connections_get_the_idle_deadline_then_a_head_deadline_per_request(engine) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(engine))
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    # Idle past the head deadline: still open (the idle deadline governs between requests).
    await asyncio.sleep(HEAD + 0.5)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
    # A second request's head that stalls is cut a head deadline after its first byte.
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    reply, took = await read_until_closed(reader, HEAD + 3)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert took < HEAD + 1


async def test_an_idle_kept_alive_connection_closes_at_the_idle_deadline(engine) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(engine))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
    rest, took = await read_until_closed(reader, IDLE + 3)
    writer.close()
    assert rest == b""
    assert IDLE - 0.5 < took < IDLE + 1.5


async def test_connections_per_source_are_capped_and_freed_when_one_closes(tmp_path) -> None:
    engine = await make_engine(tmp_path, limits=Limits(connections_per_source=3, max_connections=100))
    port = port_of(engine)
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(3):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            held.append(writer)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        reply, _ = await read_until_closed(reader, 3)
        writer.close()
        assert reply.startswith(b"HTTP/1.1 503 ")
        assert b"connections_per_source" in reply
        # Another source address is not affected by 127.0.0.1's count.
        other_reader, other = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        other.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer, _ = await read_until_closed(other_reader, 3)
        assert answer.startswith(b"HTTP/1.1 200")
        # Closing one of the three frees its slot.
        held.pop().close()
        async with asyncio.timeout(3):
            while engine.door.connections().get("127.0.0.1", 0) >= 3:
                await engine.door.connection_ended()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer, _ = await read_until_closed(reader, 3)
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        for writer in held:
            writer.close()
        await engine.close()


async def test_max_connections_caps_every_source_together(tmp_path) -> None:
    engine = await make_engine(tmp_path, limits=Limits(connections_per_source=2, max_connections=3))
    port = port_of(engine)
    held: list[asyncio.StreamWriter] = []
    try:
        for source in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            held.append(writer)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
        reply, _ = await read_until_closed(reader, 3)
        writer.close()
        assert reply.startswith(b"HTTP/1.1 503 ")
        assert b"max_connections" in reply
    finally:
        for writer in held:
            writer.close()
        await engine.close()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[limits]\nconnections_per_source = 0\n", "limits.connections_per_source"),
        ('[limits]\nmax_connections = "many"\n', "limits.max_connections"),
        ("[limits]\nconnections_per_source = 50\nmax_connections = 10\n", "limits.connections_per_source"),
        ("[limits]\nmax_conections = 10\n", "max_conections"),
    ],
)
def test_bad_limits_are_named_in_the_error(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_file(path, Config(), {})
    assert named in str(caught.value)


def test_limits_are_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "appliance.toml"
    path.write_text("[limits]\nconnections_per_source = 64\nmax_connections = 1000\n")
    limits = load_file(path, Config(), {}).config.limits
    assert limits == Limits(connections_per_source=64, max_connections=1000)


async def test_a_hot_reload_applies_new_limits_to_the_next_connections(engine) -> None:
    port = port_of(engine)
    _reader, first = await asyncio.open_connection("127.0.0.1", port)
    try:
        engine.reload(replace(engine.config, limits=Limits(connections_per_source=1, max_connections=10)))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        reply, _ = await read_until_closed(reader, 3)
        writer.close()
        assert reply.startswith(b"HTTP/1.1 503 ")
    finally:
        first.close()
