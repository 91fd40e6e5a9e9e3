"""The control socket: a real engine serving the API on a real Unix socket in a temp dir."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import protocol as p
from appliance.control.client import ControlClient, ControlError, EngineUnavailable
from appliance.control.edits import ConfigSource
from appliance.control.server import ControlServer
from appliance.control.socket import ControlSocketError, bind_control_socket
from appliance.engine import Engine
from appliance.events import CacheStatus, Event, EventBus, RequestKind
from appliance.front.ca import CertificateAuthority
from tests.fixtures.process import free_port

CONFIG_TEXT = """\
# The appliance under test.  This comment must survive every edit.
listen = "127.0.0.1:{port}"
cache_dir = "cache"
ca_dir = "ca"
control_socket = "c.sock"

[[registries]]
# a lab registry
host = "lab.example:5000"
"""


@dataclass
class Running:
    engine: Engine
    server: ControlServer
    client: ControlClient
    config_path: Path
    socket: Path


def _event(
    registry: str, status: CacheStatus, nbytes: int = 100, kind: RequestKind = RequestKind.BLOB
) -> Event:
    return Event(
        time=1.0,
        client="127.0.0.1",
        registry=registry,
        repository="library/alpine",
        kind=kind,
        reference="sha256:" + "a" * 64,
        status=status,
        bytes=nbytes,
        upstream_status=200 if status is CacheStatus.MISS else None,
    )


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    config_path = tmp_path / "appliance.toml"
    config_path.write_text(CONFIG_TEXT.replace("{port}", str(free_port())))
    environ = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    source = ConfigSource(config_path=config_path, environ=environ)
    config = source.load().config
    loop = asyncio.get_running_loop()
    ca = await loop.run_in_executor(
        None, CertificateAuthority.load_or_create, config.ca_cert_path, config.ca_key_path
    )
    engine = Engine(config=config, ca=ca, events=EventBus(queue_size=4))
    await engine.start()
    server = ControlServer(engine, source, config.control_socket)
    await server.start()
    client = ControlClient(config.control_socket, timeout=10)
    try:
        yield Running(engine, server, client, config_path, config.control_socket)
    finally:
        await client.close()
        await server.close()
        await engine.close()


async def test_status_reports_version_listen_address_ca_and_registries(running: Running) -> None:
    status = await running.client.status()
    assert status.api_version == p.API_VERSION
    assert status.pid == os.getpid()
    assert status.ca.fingerprint_sha256 == running.engine.ca.fingerprint_sha256
    assert status.ca.days_left > 300
    port = running.engine.listen_addresses[0][1]
    assert f"127.0.0.1:{port}" in status.listen
    hosts = [r.host for r in status.registries]
    assert "lab.example:5000" in hosts and "registry-1.docker.io" in hosts
    assert all(r.health is p.RegistryHealth.UNKNOWN for r in status.registries)


async def test_stats_count_published_events_per_registry(running: Running) -> None:
    bus = running.engine.events
    bus.publish(_event("lab.example:5000", CacheStatus.MISS, 1000))
    bus.publish(_event("lab.example:5000", CacheStatus.HIT, 1000))
    bus.publish(_event("lab.example:5000", CacheStatus.HIT, 1000))
    bus.publish(_event("registry-1.docker.io", CacheStatus.ERROR, 0))
    stats = await running.client.stats()
    assert (stats.totals.hits, stats.totals.misses, stats.totals.errors) == (2, 1, 1)
    assert stats.totals.bytes_from_cache == 2000
    assert stats.totals.bytes_from_upstream == 1000
    assert stats.totals.hit_ratio == pytest.approx(2 / 3)
    lab = next(r for r in stats.registries if r.registry == "lab.example:5000")
    assert lab.counters.requests == 3
    assert stats.cache.cap == running.engine.config.cache.max_size


async def test_socket_is_private_to_its_owner(running: Running) -> None:
    mode = stat.S_IMODE(os.stat(running.socket).st_mode)
    assert stat.S_ISSOCK(os.stat(running.socket).st_mode)
    assert mode == 0o600
    assert os.stat(running.socket).st_uid == os.getuid()


async def test_live_socket_is_not_stolen_by_a_second_engine(running: Running) -> None:
    with pytest.raises(ControlSocketError, match="in use"):
        bind_control_socket(running.socket)
    assert (await running.client.status()).pid == os.getpid()


def test_stale_socket_from_a_crashed_run_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(path))
    crashed.close()  # the file stays, nobody listens: what a SIGKILL leaves behind
    assert path.exists()
    sock = bind_control_socket(path)
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(path))
        probe.close()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        sock.close()


def test_a_regular_file_in_the_way_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    with pytest.raises(ControlSocketError, match="not a socket"):
        bind_control_socket(path)
    assert path.read_text() == "precious"


async def test_client_says_engine_unavailable_when_nothing_listens(tmp_path: Path) -> None:
    async with ControlClient(tmp_path / "none.sock") as client:
        with pytest.raises(EngineUnavailable, match="appliance run"):
            await client.status()


async def test_add_registry_keeps_comments_and_intercepts_at_once(running: Running) -> None:
    assert running.engine.router.intercepted("new.example", 443) is None
    change = await running.client.add_registry({"host": "new.example", "tag_ttl": "1h"})
    assert change.applied
    text = running.config_path.read_text()
    assert "# The appliance under test.  This comment must survive every edit." in text
    assert "# a lab registry" in text
    assert 'host = "new.example"' in text
    assert running.engine.router.intercepted("new.example", 443) is not None
    view = await running.client.config()
    assert any(r.host == "new.example" and r.tag_ttl == 3600.0 for r in view.registries)


@pytest.mark.parametrize(
    ("values", "where"),
    [({"host": "bad host!"}, "host"), ({"host": "ok.example", "colour": "red"}, "colour")],
)
async def test_invalid_registry_edit_is_refused_and_file_untouched(
    running: Running, values: dict[str, object], where: str
) -> None:
    before = running.config_path.read_bytes()
    with pytest.raises(ControlError) as caught:
        await running.client.add_registry(values)
    assert caught.value.code is p.ErrorCode.INVALID_CONFIG
    assert caught.value.status == 422
    assert where in str(caught.value)
    assert running.config_path.read_bytes() == before
    assert running.engine.router.intercepted("ok.example", 443) is None


async def test_update_and_remove_registry_apply_live(running: Running) -> None:
    await running.client.update_registry("lab.example:5000", {"allow_push": True})
    registry = running.engine.config.registry_for("lab.example:5000")
    assert registry is not None and registry.allow_push is True
    await running.client.update_registry("lab.example:5000", {}, unset=("allow_push",))
    registry = running.engine.config.registry_for("lab.example:5000")
    assert registry is not None and registry.allow_push is None
    await running.client.remove_registry("lab.example:5000")
    assert running.engine.config.registry_for("lab.example:5000") is None
    assert "lab.example" not in running.config_path.read_text()
    with pytest.raises(ControlError) as caught:
        await running.client.remove_registry("docker.io")
    assert caught.value.code is p.ErrorCode.INVALID_CONFIG


async def test_credential_set_masks_the_password_everywhere_it_is_shown(running: Running) -> None:
    secret = "s3cr3t-Pa55word"
    edit = p.CredentialEdit(scope="lab.example:5000", username="alice", password=secret)
    assert secret not in repr(edit)
    change = await running.client.set_credential(edit)
    assert change.applied
    assert stat.S_IMODE(os.stat(running.config_path).st_mode) == 0o600
    assert running.engine.config.credentials[0].password.reveal() == secret
    view = await running.client.config()
    env = await running.client.env()
    assert secret not in view.dumps() and secret not in env.dumps()
    assert view.credentials[0].username == "alice" and view.credentials[0].password == p.MASK
    assert any(pair.name == "AUTH_REGISTRIES" and p.MASK in pair.value for pair in env.pairs)
    await running.client.remove_credential("lab.example:5000")
    assert running.engine.config.credentials == ()


async def test_file_store_credential_needs_a_reference(running: Running) -> None:
    before = running.config_path.read_bytes()
    with pytest.raises(ControlError, match="reference"):
        await running.client.set_credential(
            p.CredentialEdit(scope="lab.example:5000", username="bob", store=p.SecretStoreName.FILE)
        )
    assert running.config_path.read_bytes() == before
    secret_file = running.config_path.parent / "bob.password"
    secret_file.write_text("from-a-file\n")
    await running.client.set_credential(
        p.CredentialEdit(
            scope="lab.example:5000", username="bob", store=p.SecretStoreName.FILE, reference=str(secret_file)
        )
    )
    assert running.engine.config.credentials[0].password.reveal() == "from-a-file"


async def test_events_stream_replays_filters_and_follows(running: Running) -> None:
    bus = running.engine.events
    bus.publish(_event("lab.example:5000", CacheStatus.MISS))
    bus.publish(_event("registry-1.docker.io", CacheStatus.MISS))
    stream = await running.client.events(p.EventFilter(registries=("lab.example:5000",)), replay=10)
    try:
        assert stream.hello.replayed == 1
        batches = aiter(stream)
        first = await asyncio.wait_for(anext(batches), 5)
        assert [e.registry for e in first.events] == ["lab.example:5000"]
        bus.publish(_event("registry-1.docker.io", CacheStatus.HIT))
        bus.publish(_event("lab.example:5000", CacheStatus.HIT))
        second = await asyncio.wait_for(anext(batches), 5)
        assert [(e.registry, e.status) for e in second.events] == [("lab.example:5000", p.EventStatus.HIT)]
        assert (await running.client.stats()).events.subscribers == 1
        metrics_text = (await running.engine.router.metrics_response()).text or ""
        assert "appliance_events_subscribers 1" in metrics_text.splitlines()
    finally:
        await stream.close()


@pytest.mark.parametrize("query", ["status=NOPE", "replay=-1", "kind=blobs"])
async def test_events_stream_refuses_bad_parameters_before_upgrading(running: Running, query: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(running.socket))) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(f"http://appliance{p.EVENTS}?{query}")
    assert caught.value.status == 400


async def test_subscriber_that_does_not_read_loses_oldest_events_and_drops_are_counted(
    running: Running,
) -> None:
    bus = running.engine.events
    stream = await running.client.events()
    try:
        # 50 events in one go, while the subscriber's writer cannot run: the queue holds 4.
        for i in range(50):
            bus.publish(_event("lab.example:5000", CacheStatus.HIT, i))
        stats = await running.client.stats()
        assert stats.events.queue_size == 4
        assert stats.events.dropped_total == 46
        batch = await asyncio.wait_for(anext(aiter(stream)), 5)
        assert [e.bytes for e in batch.events] == [46, 47, 48, 49]  # the newest survive
        assert batch.dropped == 46
    finally:
        await stream.close()


async def test_cache_actions_round_trip(running: Running) -> None:
    images = await running.client.images()
    assert images.images == ()
    assert (await running.client.purge(p.PurgeRequest(all=True))).removed == 0
    assert (await running.client.pin("docker.io", "library/alpine")).entries == 0
    result = await running.client.verify()
    assert result.consistent
    with pytest.raises(ControlError) as caught:
        await running.client.purge(p.PurgeRequest())
    assert caught.value.code is p.ErrorCode.BAD_REQUEST


async def test_unknown_endpoint_answers_with_the_error_envelope(running: Running) -> None:
    with pytest.raises(ControlError) as caught:
        await running.client._call("GET", "/v1/nope", p.Status)
    assert caught.value.code is p.ErrorCode.NOT_FOUND


async def test_close_removes_the_socket_file(running: Running) -> None:
    await running.server.close()
    assert not running.socket.exists()


async def test_metrics_route_on_the_listen_port_counts_requests(running: Running) -> None:
    import aiohttp

    running.engine.events.publish(_event("lab.example:5000", CacheStatus.HIT, 7))
    port = running.engine.listen_addresses[0][1]
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as answer:
        text = await answer.text()
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    line = 'appliance_cache_requests_total{registry="lab.example:5000",kind="blob",status="HIT"} 1'
    assert line in text
