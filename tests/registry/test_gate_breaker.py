"""The per-registry breaker trips on an unreachable registry, not on one bad answer (issue 15, item 6).

A repository whose blob redirects loop (or point somewhere refused, or at a CDN that is down) fails
that request; every other repository of the registry keeps being served, at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from appliance.config.model import ResolveOverride
from appliance.engine import Engine
from appliance.errors import UpstreamError, UpstreamUnreachable
from appliance.front.ca import CertificateAuthority
from appliance.registry.gate import GatedUpstream
from appliance.registry.health import UpstreamHealth
from appliance.upstream.client import UpstreamClient
from tests.fixtures.redirect_world import NAMES, REGISTRY, RedirectWorld, redirect_world, trap


def blob_path(repository: str) -> str:
    digest = hashlib.sha256(f"blob of {repository}".encode()).hexdigest()
    return f"/v2/{repository}/blobs/sha256:{digest}"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[RedirectWorld]:
    async with redirect_world(tmp_path) as found:
        found.redirects["loops/app"] = "https://cdn.test/loop/1"
        yield found


@pytest.fixture
async def gate(world: RedirectWorld) -> AsyncIterator[GatedUpstream]:
    upstream = UpstreamClient(world.config())
    await upstream.start()
    yield GatedUpstream(upstream, UpstreamHealth(backoff=60))
    await upstream.close()


async def test_a_redirect_loop_fails_its_request_without_marking_the_registry_down(world, gate) -> None:
    with pytest.raises(UpstreamError, match="more than 5 redirects"):
        await gate.request(REGISTRY, "GET", blob_path("loops/app"))
    assert gate.health.unreachable(REGISTRY.host) is None
    answer = await gate.request(REGISTRY, "GET", blob_path("team/app"))
    assert answer.status == 200
    assert await answer.read(100) == b"blob of team/app"


async def test_a_refused_redirect_does_not_mark_the_registry_down(world, gate) -> None:
    world.redirects["bad/app"] = "https://localhost/steal"
    with pytest.raises(UpstreamError, match="refused: loopback"):
        await gate.request(REGISTRY, "GET", blob_path("bad/app"))
    assert gate.health.unreachable(REGISTRY.host) is None


async def test_a_cdn_that_cannot_be_reached_does_not_mark_the_registry_down(world) -> None:
    async with trap("127.0.0.2") as closed:
        port = closed.port
    # The trap is closed now, so its port refuses connections; dead.test (a --resolve name) goes there.
    config = world.config(
        resolve=(
            *(ResolveOverride(name, None, "127.0.0.1", world.port) for name in NAMES),
            ResolveOverride("dead.test", None, "127.0.0.2", port),
        )
    )
    world.redirects["cdn-down/app"] = "https://dead.test/blob"
    upstream = UpstreamClient(config)
    await upstream.start()
    try:
        gate = GatedUpstream(upstream, UpstreamHealth(backoff=60))
        with pytest.raises(UpstreamError, match=r"cannot connect to dead\.test:443"):
            await gate.request(REGISTRY, "GET", blob_path("cdn-down/app"))
        assert gate.health.unreachable(REGISTRY.host) is None
    finally:
        await upstream.close()


async def test_an_unreachable_registry_still_trips_the_breaker(tmp_path) -> None:
    async with trap("127.0.0.2") as closed:
        port = closed.port
    nowhere = ResolveOverride("registry.test", None, "127.0.0.2", port)
    upstream = UpstreamClient(RedirectWorld().config(upstream_ca=None, resolve=(nowhere,)))
    await upstream.start()
    try:
        gate = GatedUpstream(upstream, UpstreamHealth(backoff=60))
        with pytest.raises(UpstreamUnreachable):
            await gate.request(REGISTRY, "GET", blob_path("team/app"))
        assert gate.health.unreachable(REGISTRY.host) is not None
    finally:
        await upstream.close()


# -- the whole engine: one looping repository, every other repository still served ----------------


@pytest.fixture
async def engine(world: RedirectWorld, tmp_path: Path) -> AsyncIterator[Engine]:
    config = replace(
        world.config(),
        listen_host="127.0.0.1",
        listen_port=0,
        cache_dir=tmp_path / "cache",
        ca_dir=tmp_path / "ca",
        control_socket=tmp_path / "control.sock",
    )
    ca = await asyncio.to_thread(CertificateAuthority.load_or_create, config.ca_cert_path, config.ca_key_path)
    running = Engine(config=config, ca=ca)
    await running.start()
    try:
        yield running
    finally:
        await running.close()


async def test_mirror_clients_of_other_repositories_are_served_right_after_a_redirect_loop(engine) -> None:
    base = f"http://127.0.0.1:{engine.listen_addresses[0][1]}/v2/registry.test"
    async with aiohttp.ClientSession() as session:
        async with session.get(base + blob_path("loops/app").removeprefix("/v2")) as looping:
            assert looping.status == 502
            assert "more than 5 redirects" in await looping.text()
        async with session.get(base + blob_path("team/app").removeprefix("/v2")) as other:
            assert other.status == 200
            assert await other.read() == b"blob of team/app"
