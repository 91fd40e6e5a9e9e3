"""The front door and the router against a real in-process engine: interception, routing, refusals,
hostile input."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.config.model import Config, RegistryConfig, Timeouts, docker_hub
from appliance.engine import Engine
from appliance.events import Event
from appliance.front.ca import CertificateAuthority


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    config = Config(
        listen_host="127.0.0.1",
        listen_port=0,
        cache_dir=tmp_path / "cache",
        ca_dir=tmp_path / "ca",
        control_socket=tmp_path / "control.sock",
        registries=(docker_hub(), RegistryConfig(host="registry.test"), RegistryConfig(host="lab.test:5000")),
        timeouts=replace(Timeouts(), client_header=1.0),
    )
    ca = await asyncio.to_thread(CertificateAuthority.load_or_create, config.ca_cert_path, config.ca_key_path)
    engine = Engine(config=config, ca=ca)
    await engine.start()
    engine.door.tls_handshake_timeout = 1.0
    try:
        yield engine
    finally:
        await engine.close()


def _port(engine: Engine) -> int:
    return engine.listen_addresses[0][1]


async def _exchange(engine: Engine, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(engine))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), read_timeout)
    finally:
        writer.close()


async def _tls_through_connect(engine: Engine, host: str, port: int = 443) -> tuple[bytes, str]:
    """CONNECT, handshake trusting only the appliance CA, GET / inside; returns (reply, peer cert CN/SAN)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(engine))
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200"), status
    context = ssl.create_default_context(cafile=str(engine.config.ca_cert_path))
    await writer.start_tls(context, server_hostname=host)
    writer.write(f"GET /v1/_ping HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    peer = writer.get_extra_info("peercert")
    writer.close()
    return reply, json.dumps(peer)


async def _open_tunnel(engine: Engine, host: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """CONNECT to ``host``:443 and a TLS session inside it that trusts only the appliance CA."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(engine))
    writer.write(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(engine.config.ca_cert_path))
    await writer.start_tls(context, server_hostname=host)
    return reader, writer


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str) -> bytes:
    """One keep-alive GET on an open connection; the whole response (head and body)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


async def test_intercepted_connect_serves_requests_inside_tls_with_a_leaf_for_that_host(
    engine: Engine,
) -> None:
    reply, peer = await _tls_through_connect(engine, "registry.test")
    assert reply.startswith(b"HTTP/1.1 405"), reply[:200]
    assert b"UNSUPPORTED" in reply and b"registry.test" in reply
    assert "registry.test" in peer


async def test_leaves_for_every_served_host_are_minted_at_start_and_reused(engine: Engine) -> None:
    await engine.settled()
    served = ("registry-1.docker.io", "auth.docker.io", "registry.test", "lab.test")
    assert all(engine.leaf_certs.certificate(host) is not None for host in served)
    minted = engine.leaf_certs.minted
    assert minted == len(served)
    await _tls_through_connect(engine, "registry.test")
    await _tls_through_connect(engine, "registry.test")
    await _tls_through_connect(engine, "lab.test", 5000)
    assert engine.leaf_certs.minted == minted  # no handshake waited for a mint


async def test_docker_hub_auth_host_is_intercepted_too(engine: Engine) -> None:
    _reply, peer = await _tls_through_connect(engine, "auth.docker.io")
    assert "auth.docker.io" in peer


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("169.254.169.254:443", b"link-local"),
        ("127.0.0.1:443", b"loopback"),
        ("localhost:443", b"loopback"),
        ("[::1]:443", b"loopback"),
        ("example.invalid:22", b"443"),
    ],
)
async def test_connect_to_forbidden_targets_is_refused_with_403(
    engine: Engine, target: str, reason: bytes
) -> None:
    reply = await _exchange(engine, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 403"), reply
    assert reason in reply.lower()


async def test_connect_to_the_appliance_itself_is_refused(engine: Engine) -> None:
    engine.config = replace(engine.config, tunnel=replace(engine.config.tunnel, mode="all"))  # type: ignore[arg-type]
    target = f"127.0.0.1:{_port(engine)}"
    reply = await _exchange(engine, f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 403"), reply


async def test_plain_endpoints_answer_health_and_ca(engine: Engine) -> None:
    health = await _exchange(engine, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200") and b'"status": "ok"' in health
    ca = await _exchange(engine, b"GET /ca.crt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"-----BEGIN CERTIFICATE-----" in ca
    script = await _exchange(
        engine, b"GET /setup/systemd HTTP/1.1\r\nHost: proxy.lan:3128\r\nConnection: close\r\n\r\n"
    )
    assert b"HTTPS_PROXY=http://proxy.lan:3128/" in script


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x00\x01\x02garbage\r\n\r\n", b" 400 "),
        (b"CONNECT nohostport HTTP/1.1\r\n\r\n", b" 400 "),
        (b"CONNECT a b c d\r\n\r\n", b" 400 "),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", b" 4"),
        (b"CONNECT registry.test:443 HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", b" 431 "),
    ],
)
async def test_malformed_input_gets_a_clean_error_and_the_engine_keeps_serving(
    engine: Engine, payload: bytes, expected: bytes
) -> None:
    reply = await _exchange(engine, payload)
    assert reply.startswith(b"HTTP/1.") and reply[8:].startswith(expected), reply[:200]
    health = await _exchange(engine, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200")


async def test_half_request_times_out_while_others_are_served(engine: Engine) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(engine))
    writer.write(b"CONNECT registry.te")
    await writer.drain()
    health = await _exchange(engine, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200")
    reply = await asyncio.wait_for(reader.read(), 5)
    assert reply.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_tls_handshake_that_never_finishes_is_dropped(engine: Engine) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(engine))
    writer.write(b"CONNECT registry.test:443 HTTP/1.1\r\n\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.write(b"\x16\x03\x01\x00")  # the start of a ClientHello, then silence
    await writer.drain()
    health = await _exchange(engine, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_request_in_an_open_tunnel_after_a_reload_removed_its_registry_gets_404_name_unknown(
    engine: Engine,
) -> None:
    reader, writer = await _open_tunnel(engine, "registry.test")
    try:
        before = await _request(reader, writer, "registry.test", "/v1/_ping")
        assert before.startswith(b"HTTP/1.1 405"), before[:200]
        kept = tuple(r for r in engine.config.registries if r.host != "registry.test")
        assert engine.reload(replace(engine.config, registries=kept)) == ()
        after = await _request(reader, writer, "registry.test", "/v1/_ping")
        assert after.startswith(b"HTTP/1.1 404"), after[:200]
        assert b"NAME_UNKNOWN" in after and b"registry.test is no longer served" in after
    finally:
        writer.close()


async def test_a_tunnelled_request_is_recorded_for_the_client_socket_and_the_registry_its_connect_named(
    engine: Engine,
) -> None:
    seen: list[Event] = []
    engine.events.add_listener(seen.append)
    # docker.io is an alias: the request is Docker Hub's, under the registry's configured name.
    reader, writer = await _open_tunnel(engine, "docker.io")
    try:
        reply = await _request(reader, writer, "docker.io", "/v1/_ping")
        client_port = writer.get_extra_info("sockname")[1]
    finally:
        writer.close()
    assert reply.startswith(b"HTTP/1.1 405"), reply[:200]
    assert [(e.client, e.registry, e.http_status) for e in seen] == [
        (f"127.0.0.1:{client_port}", "registry-1.docker.io", 405)
    ]


@pytest.mark.parametrize(
    ("request_head", "status", "says"),
    [
        (b"GET /setup/windows HTTP/1.1\r\nHost: proxy.lan:3128", b"404", b"no setup for windows: try "),
        (b"GET /setup/systemd HTTP/1.1\r\nHost: proxy lan", b"400", b"not a HOST:PORT address"),
        (b"GET /admin HTTP/1.1\r\nHost: x", b"404", b"nothing is served at /admin"),
        (b"GET http://registry.test/v2/ HTTP/1.1\r\nHost: registry.test", b"403", b"not registry.test"),
    ],
)
async def test_requests_the_router_does_not_serve_get_an_oci_error_naming_why(
    engine: Engine, request_head: bytes, status: bytes, says: bytes
) -> None:
    reply = await _exchange(engine, request_head + b"\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:200]
    assert b'"errors"' in reply and says in reply, reply


async def _fetch(engine: Engine, path: str) -> bytes:
    """GET ``path`` on the listen port with ``Connection: close``; the whole reply, up to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(engine))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_metrics_and_the_bare_mirror_ping_are_answered_on_the_listen_port(engine: Engine) -> None:
    metrics = await _fetch(engine, "/metrics")
    assert metrics.startswith(b"HTTP/1.1 200") and b"\nappliance_events_subscribers 0\n" in metrics, metrics
    ping = await _fetch(engine, "/v2/")
    assert ping.startswith(b"HTTP/1.1 200"), ping
    assert b"docker-distribution-api-version: registry/2.0" in ping.lower()
