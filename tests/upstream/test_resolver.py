"""``--resolve`` overrides and IPv4-only resolution, down to a real connection."""

from __future__ import annotations

import socket

import aiohttp
from aiohttp import web

from appliance.config.model import ResolveOverride
from appliance.upstream.resolver import OverrideResolver, find_override


def test_override_naming_the_port_wins_over_a_portless_one():
    any_port = ResolveOverride("reg.test", None, "127.0.0.1", 1111)
    port_443 = ResolveOverride("reg.test", 443, "127.0.0.2", 2222)
    overrides = [any_port, port_443]
    assert find_override(overrides, "reg.test", 443) is port_443
    assert find_override(overrides, "REG.test.", 5000) is any_port
    assert find_override(overrides, "other.test", 443) is None
    assert find_override([port_443], "reg.test", 5000) is None


async def test_override_answers_with_its_own_address_and_port():
    resolver = OverrideResolver([ResolveOverride("reg.test", 443, "::1", 8443)])
    [result] = await resolver.resolve("reg.test", 443, socket.AF_UNSPEC)
    assert (result["hostname"], result["host"], result["port"], result["family"]) == (
        "reg.test",
        "::1",
        8443,
        socket.AF_INET6,
    )
    await resolver.close()


async def test_ipv4_only_never_returns_ipv6_addresses():
    resolver = OverrideResolver(ipv4_only=True)
    results = await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
    assert results and {r["family"] for r in results} == {socket.AF_INET}
    v6 = OverrideResolver([ResolveOverride("reg.test", None, "::1", 1)], ipv4_only=True)
    try:
        await v6.resolve("reg.test", 443)
    except OSError as exc:
        assert "IPv6 is disabled" in str(exc)
    else:
        raise AssertionError("an IPv6 override must fail when IPv6 is disabled")
    await resolver.close()


async def test_a_real_request_reaches_the_override_and_keeps_the_host_header():
    hosts: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hosts.append(request.host)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    resolver = OverrideResolver([ResolveOverride("made-up.test", 5000, "127.0.0.1", port)], ipv4_only=True)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as session:
            async with session.get("http://made-up.test:5000/") as response:
                assert await response.text() == "ok"
        assert hosts == ["made-up.test:5000"]
    finally:
        await runner.cleanup()
