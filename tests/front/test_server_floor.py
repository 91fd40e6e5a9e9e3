"""The network floor at accept time (issue 17, item 1), with real sockets on loopback.

A routable source address cannot be had on loopback, so the refusal is proved with ``allow_clients``
excluding 127.0.0.1 and allowing 127.0.0.2 (a second loopback source, ``local_addr``), on the plain
port and on the TLS listener; the default floor is shown to let 127.0.0.1 in.  The default ranges
themselves are a table in tests/access/test_network.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from dataclasses import replace
from pathlib import Path

import pytest

from appliance import runner
from appliance.config.model import Config, RegistryConfig, docker_hub
from appliance.engine import Engine
from appliance.front.ca import CertificateAuthority

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
ONLY_127_0_0_2 = (ipaddress.ip_network("127.0.0.2/32"),)


def base_config(tmp_path: Path, **changes: object) -> Config:
    config = Config(
        listen_host="127.0.0.1",
        listen_port=0,
        cache_dir=tmp_path / "cache",
        ca_dir=tmp_path / "ca",
        control_socket=tmp_path / "control.sock",
        registries=(docker_hub(), RegistryConfig(host="registry.test")),
    )
    return replace(config, **changes)  # type: ignore[arg-type]


async def make_engine(tmp_path: Path, **changes: object) -> Engine:
    config = base_config(tmp_path, **changes)
    ca = await asyncio.to_thread(CertificateAuthority.load_or_create, config.ca_cert_path, config.ca_key_path)
    engine = Engine(config=config, ca=ca)
    await engine.start()
    return engine


async def exchange(port: int, source: str, data: bytes, tls: ssl.SSLContext | None = None) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(source, 0), ssl=tls, server_hostname="registry.test" if tls else None
    )
    try:
        writer.write(data)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def test_the_default_floor_lets_loopback_in(tmp_path: Path) -> None:
    engine = await make_engine(tmp_path)
    try:
        assert engine.config.allow_clients is None
        answer = await exchange(engine.listen_addresses[0][1], "127.0.0.1", HEALTH)
        assert answer.startswith(b"HTTP/1.1 200")
        assert engine.door.refused_by_floor == 0
    finally:
        await engine.close()


async def test_a_source_outside_allow_clients_is_refused_at_accept(tmp_path: Path) -> None:
    engine = await make_engine(tmp_path, allow_clients=ONLY_127_0_0_2)
    port = engine.listen_addresses[0][1]
    try:
        # Sending nothing: the answer comes at accept, not after a request was read.
        refused = await exchange(port, "127.0.0.1", b"")
        assert refused.startswith(b"HTTP/1.1 403 ")
        assert b"allow_clients" in refused
        assert engine.door.refused_by_floor == 1
        refused = await exchange(port, "127.0.0.1", b"CONNECT registry.test:443 HTTP/1.1\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 403 ")
        assert engine.door.refused_by_floor == 2
        allowed = await exchange(port, "127.0.0.2", HEALTH)
        assert allowed.startswith(b"HTTP/1.1 200")
        assert engine.door.refused_by_floor == 2
    finally:
        await engine.close()


async def test_the_tls_listener_closes_a_refused_source_before_the_handshake(tmp_path: Path) -> None:
    engine = await make_engine(tmp_path, allow_clients=ONLY_127_0_0_2, tls_listen=("127.0.0.1", 0))
    port = engine.tls_addresses[0][1]
    client = ssl.create_default_context(cafile=str(engine.config.ca_cert_path))
    try:
        # A raw socket that sends nothing: the refusal comes without waiting for a ClientHello,
        # and not one byte (no ServerHello, no alert) comes back.
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.1", 0))
        try:
            async with asyncio.timeout(5):
                data = await reader.read()
        except ConnectionResetError:
            data = b""
        finally:
            writer.close()
        assert data == b""
        assert engine.door.refused_by_floor == 1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await exchange(port, "127.0.0.1", HEALTH, client)
        # The allowed source completes the handshake and is served as before.
        answer = await exchange(port, "127.0.0.2", HEALTH, client)
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        await engine.close()


async def test_a_hot_reload_applies_a_new_floor_to_the_next_connections(tmp_path: Path) -> None:
    engine = await make_engine(tmp_path)
    port = engine.listen_addresses[0][1]
    try:
        assert (await exchange(port, "127.0.0.1", HEALTH)).startswith(b"HTTP/1.1 200")
        engine.apply(replace(engine.config, allow_clients=ONLY_127_0_0_2))
        assert (await exchange(port, "127.0.0.1", HEALTH)).startswith(b"HTTP/1.1 403")
        assert (await exchange(port, "127.0.0.2", HEALTH)).startswith(b"HTTP/1.1 200")
    finally:
        await engine.close()


async def test_start_up_warns_loudly_when_listening_beyond_loopback_without_client_auth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appliance")

    async def start_and_stop(config: Config) -> list[str]:
        caplog.clear()
        ready = asyncio.Event()
        task = asyncio.create_task(runner.serve(config, ready=ready))
        try:
            async with asyncio.timeout(30):
                await ready.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    # Bound to every interface, but only 127.0.0.1 may connect while the test runs.
    exposed = base_config(
        tmp_path, listen_host="0.0.0.0", allow_clients=(ipaddress.ip_network("127.0.0.1/32"),)
    )
    warnings = await start_and_stop(exposed)
    assert any("WITHOUT client authentication" in w and "127.0.0.1/32" in w for w in warnings), warnings
    quiet = await start_and_stop(base_config(tmp_path))
    assert not any("WITHOUT client authentication" in w for w in quiet), quiet


async def test_an_ipv6_source_is_judged_by_the_ipv6_networks(tmp_path: Path) -> None:
    # Listening on ::1: the default lets ::1 in; an IPv4-only allow_clients refuses it.
    default = await make_engine(tmp_path / "a", listen_host="::1")
    try:
        reader, writer = await asyncio.open_connection("::1", default.listen_addresses[0][1])
        writer.write(HEALTH)
        async with asyncio.timeout(5):
            assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await default.close()
    narrowed = await make_engine(
        tmp_path / "b", listen_host="::1", allow_clients=(ipaddress.ip_network("127.0.0.0/8"),)
    )
    try:
        reader, writer = await asyncio.open_connection("::1", narrowed.listen_addresses[0][1])
        async with asyncio.timeout(5):
            assert (await reader.read()).startswith(b"HTTP/1.1 403")
        writer.close()
        assert narrowed.door.refused_by_floor == 1
    finally:
        await narrowed.close()
