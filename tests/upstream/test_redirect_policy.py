"""Upstream redirects cannot be used to reach what only the appliance can reach (issue 15, item 2).

Every refused target here is on loopback (a ``Trap`` counting connections, ``localhost``) and the
tests assert the trap saw no connection: the refusal happens before connecting.  Metadata addresses
are only ever checked as values, never dialled.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from appliance.config.model import RegistryConfig, ResolveOverride, Scheme, TunnelMode, TunnelPolicy
from appliance.errors import UpstreamRefused
from appliance.front.tunnel_policy import check_addresses
from appliance.upstream.addresses import AddressClass, classify_address
from appliance.upstream.client import UpstreamClient
from appliance.upstream.redirect_policy import RedirectPolicy, RedirectRefused
from appliance.upstream.resolver import OverrideResolver
from tests.fixtures.redirect_world import REGISTRY, RedirectWorld, redirect_world, trap

METADATA = ("100.100.100.200", "fd00:ec2::254", "168.63.129.16", "::ffff:100.100.100.200")
BLOB = "/v2/{repo}/blobs/sha256:" + "ab" * 32


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[RedirectWorld]:
    async with redirect_world(tmp_path) as found:
        yield found


@pytest.fixture
async def client(world: RedirectWorld) -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient(world.config())
    await upstream.start()
    yield upstream
    await upstream.close()


# -- the address policy, on values ----------------------------------------------------------------


@pytest.mark.parametrize("address", METADATA)
def test_metadata_addresses_outside_link_local_are_their_own_class(address: str) -> None:
    assert classify_address(address) is AddressClass.METADATA


@pytest.mark.parametrize("mode", list(TunnelMode))
@pytest.mark.parametrize("address", METADATA)
def test_tunnels_to_metadata_addresses_are_refused_in_every_mode(mode: TunnelMode, address: str) -> None:
    policy = TunnelPolicy(mode=mode, hosts=(f"[{address}]:443",) if mode is TunnelMode.LIST else ())
    decision = check_addresses(policy, "meta.example", 443, [address], own_addresses=())
    assert not decision.allowed
    assert "cloud metadata" in decision.reason


@pytest.mark.parametrize("address", [*METADATA, "169.254.169.254", "fe80::1"])
def test_redirects_to_metadata_addresses_are_refused_even_with_tunnel_all(address: str) -> None:
    policy = RedirectPolicy(tunnel=TunnelPolicy(mode=TunnelMode.ALL))
    with pytest.raises(RedirectRefused, match=r"cloud metadata|link-local"):
        policy.check_addresses("cdn.example", 443, [address])


def test_redirect_policy_allows_loopback_only_with_tunnel_all_and_never_the_appliance() -> None:
    default = RedirectPolicy()
    with pytest.raises(RedirectRefused, match="loopback"):
        default.check_addresses("cdn.example", 8080, ["127.0.0.9"])
    lab = RedirectPolicy(tunnel=TunnelPolicy(mode=TunnelMode.ALL), own_ports=frozenset({3128}))
    lab.check_addresses("cdn.example", 8080, ["127.0.0.9"])
    with pytest.raises(RedirectRefused, match="the appliance itself"):
        lab.check_addresses("cdn.example", 3128, ["127.0.0.9"])


def test_configured_registries_resolve_names_and_allow_entries_are_exempt() -> None:
    config = RedirectWorld().config(
        registries=(RegistryConfig(host="lab.test:5000", auth_hosts=("auth.lab.test",)),),
        resolve=(ResolveOverride("blobs.lab.test", None, "127.0.0.1", 9000),),
        tunnel=TunnelPolicy(mode=TunnelMode.LIST, hosts=("*.storage.lab.test:9443",)),
    )
    policy = RedirectPolicy.from_config(config)
    assert policy.exempt("lab.test", 5000)
    assert policy.exempt("AUTH.lab.test.", 443)
    assert policy.exempt("blobs.lab.test", 80)
    assert policy.exempt("eu.storage.lab.test", 9443)
    assert not policy.exempt("eu.storage.lab.test", 443)
    assert not policy.exempt("cdn.example", 443)


class _MapsToLoopback(AbstractResolver):
    """A DNS that answers a made-up name with a loopback address (no --resolve entry involved)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host, host="127.0.0.7", port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None


async def test_the_guarded_resolver_refuses_a_name_that_resolves_to_loopback() -> None:
    dns = _MapsToLoopback()
    policy = RedirectPolicy()
    resolver = OverrideResolver((), fallback=dns, guard=policy.check_addresses)
    with pytest.raises(RedirectRefused, match=r"rebound\.example \(127\.0\.0\.7\) refused: loopback"):
        await resolver.resolve("rebound.example", 443)
    assert dns.asked == ["rebound.example"]  # checked on the answer itself, at resolve time


# -- the engine's redirect follower, against loopback servers --------------------------------------


async def test_redirect_to_a_loopback_ip_is_refused_before_connecting(world, client) -> None:
    async with trap("127.0.0.2") as target:
        world.redirects["team/app"] = f"https://127.0.0.2:{target.port}/steal"
        with pytest.raises(UpstreamRefused, match=r"127\.0\.0\.2 refused: loopback address"):
            await client.request(REGISTRY, "GET", BLOB.format(repo="team/app"))
        assert target.connections == 0


async def test_redirect_to_a_name_resolving_to_loopback_is_refused_before_connecting(world, client) -> None:
    async with trap("127.0.0.1") as target:
        world.redirects["team/app"] = f"https://localhost:{target.port}/steal"
        with pytest.raises(UpstreamRefused, match=r"localhost \(.*\) refused: loopback address"):
            await client.request(REGISTRY, "GET", BLOB.format(repo="team/app"))
        assert target.connections == 0


async def test_redirect_from_https_down_to_http_is_refused(world, client) -> None:
    # cdn.test is exempt (a --resolve name): only the scheme is wrong.
    world.redirects["team/app"] = "http://cdn.test/blob"
    with pytest.raises(UpstreamRefused, match=r"down to http://cdn\.test refused"):
        await client.request(REGISTRY, "GET", BLOB.format(repo="team/app"))
    assert not [hit for hit in world.hits if hit.startswith("cdn.test")]


async def test_downgrade_check_lets_a_plain_http_registry_redirect_to_http() -> None:
    http_registry = RegistryConfig(host="plain.test:5000", scheme=Scheme.HTTP)
    policy = RedirectPolicy.from_config(RedirectWorld().config(registries=(http_registry,)))
    assert policy.check_hop(http_registry, URL("https://cdn.example/a"), URL("http://cdn.example/b"))
    with pytest.raises(RedirectRefused, match="down to http"):
        policy.check_hop(REGISTRY, URL("https://registry.test/a"), URL("http://cdn.example/b"))


async def test_redirect_to_a_configured_resolve_name_on_loopback_is_still_followed(world, client) -> None:
    world.redirects["team/app"] = "https://cdn.test/blob"
    answer = await client.request(REGISTRY, "GET", BLOB.format(repo="team/app"))
    assert answer.status == 200
    assert await answer.read(100) == b"cdn-bytes"
