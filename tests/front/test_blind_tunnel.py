"""CONNECTs that are not intercepted, through a real in-process engine to a loopback echo server.

The target is a made-up name (``echo.test``) that a ``--resolve`` override maps to the echo server's
loopback port, as the end-to-end fixtures map registry names: nothing is looked up in DNS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.access.passwords import hash_password
from appliance.config.access import AccessConfig, AclRule, Action, User
from appliance.config.model import Config, ResolveOverride, TunnelMode, TunnelPolicy
from appliance.engine import Engine
from appliance.events import Event
from appliance.front.ca import CertificateAuthority
from tests.fixtures.identity_engine import basic

ECHO_NAME = "echo.test"


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    """A loopback TCP server that sends back what it reads; yields its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def engine(tmp_path: Path, echo: int) -> AsyncIterator[Engine]:
    config = Config(
        listen_host="127.0.0.1",
        listen_port=0,
        cache_dir=tmp_path / "cache",
        ca_dir=tmp_path / "ca",
        control_socket=tmp_path / "control.sock",
        registries=(),
        # Loopback targets need the seed's open mode; the override maps port 443 to the echo port.
        tunnel=TunnelPolicy(mode=TunnelMode.ALL),
        resolve=(ResolveOverride(ECHO_NAME, 443, "127.0.0.1", echo),),
    )
    ca = await asyncio.to_thread(CertificateAuthority.load_or_create, config.ca_cert_path, config.ca_key_path)
    engine = Engine(config=config, ca=ca)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


async def _connect(engine: Engine, target: str) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.listen_addresses[0][1])
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head, reader, writer


async def test_a_tunnel_to_a_name_with_a_resolve_override_reaches_the_mapped_address_and_port(
    engine: Engine,
) -> None:
    head, reader, writer = await _connect(engine, f"{ECHO_NAME}:443")
    try:
        assert head.startswith(b"HTTP/1.1 200"), head
        writer.write(b"bytes through the tunnel")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(24), 5) == b"bytes through the tunnel"
    finally:
        writer.close()


async def test_a_reload_of_the_tunnel_setting_reaches_the_next_connect(engine: Engine) -> None:
    assert engine.reload(replace(engine.config, tunnel=TunnelPolicy(mode=TunnelMode.NONE))) == ()
    head, reader, writer = await _connect(engine, f"{ECHO_NAME}:443")
    try:
        assert head.startswith(b"HTTP/1.1 403"), head
        assert b"tunnelling is disabled" in await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_with_access_control_on_a_tunnel_needs_a_rule_for_its_host_and_each_decision_is_audited(
    engine: Engine,
) -> None:
    access = AccessConfig(
        enabled=True,
        users=(
            User("alice", hash_password("alice-pw", log_n=8)),
            User("bob", hash_password("bob-pw", log_n=8)),
        ),
        acl=(AclRule("alice", frozenset({Action.TUNNEL}), registry=ECHO_NAME),),
    )
    engine.reload(replace(engine.config, access=access))
    seen: list[Event] = []
    engine.events.add_listener(seen.append)

    async def connect(user: str, password: str) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.listen_addresses[0][1])
        auth = basic(user, password)
        writer.write(f"CONNECT {ECHO_NAME}:443 HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5), reader, writer

    head, reader, writer = await connect("bob", "bob-pw")
    try:
        assert head.startswith(b"HTTP/1.1 403"), head
        assert b"access denied: bob may not tunnel echo.test" in await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, reader, writer = await connect("alice", "alice-pw")
    try:
        assert head.startswith(b"HTTP/1.1 200"), head
        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    finally:
        writer.close()
    decisions = [(e.identity, e.method, e.registry, e.access, e.http_status) for e in seen]
    assert decisions == [
        ("bob", "CONNECT", ECHO_NAME, "denied", 403),
        ("alice", "CONNECT", ECHO_NAME, "allowed", 200),
    ]
    assert all("-pw" not in e.access_reason + e.message for e in seen)
