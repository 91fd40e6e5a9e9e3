"""The upstream client against real loopback TLS servers playing registry, token realm and CDN.

One aiohttp server with a certificate for several made-up names (registry.test, auth.test, ...) plays
every role, dispatching on the ``Host`` header; ``--resolve`` overrides send all those names to its
loopback port.  Every request it gets is recorded, so the tests assert on traffic.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from appliance.config.model import (
    Config,
    Credential,
    RegistryConfig,
    ResolveOverride,
    Scheme,
    Secret,
    Timeouts,
)
from appliance.errors import UpstreamError
from appliance.upstream.client import UpstreamClient
from tests.fixtures.pki import issue_server_cert, make_ca, pem

PASSWORD = "s3cr3t-Pa55word!"
PROXY_PASSWORD = "proxy-Pa55-xyzzy"
NAMES = ("registry.test", "auth.test", "evil.test", "cdn.test", "cdn2.test", "basic.test", "ar.test")
BASIC = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, PROXY_PASSWORD, BASIC.split(" ")[1])


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# -- certificates ---------------------------------------------------------------------------------


def make_server_context(directory: Path, names: tuple[str, ...]) -> tuple[Path, ssl.SSLContext]:
    """The test CA's file, and a server context with one certificate for all of ``names``."""
    ca_key, ca_cert = make_ca()
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(pem(ca_cert))
    key, cert = issue_server_cert(ca_key, ca_cert, names[0], also=names[1:])
    cert_path, key_path = directory / "leaf.crt", directory / "leaf.key"
    cert_path.write_bytes(pem(cert))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return ca_file, context


# -- the loopback world ---------------------------------------------------------------------------


@dataclass
class Seen:
    host: str
    method: str
    path_qs: str
    authorization: str | None
    host_header: str
    body_bytes: int = 0


@dataclass
class World:
    port: int = 0
    ca_file: Path = Path()
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    tokens: dict[str, set[str]] = field(default_factory=dict)
    realm: str = "https://auth.test/token"
    expires_in: int = 300
    public: set[str] = field(default_factory=lambda: {"library/alpine"})

    def hits(self, host: str, path_prefix: str = "") -> list[Seen]:
        return [s for s in self.seen if s.host == host and s.path_qs.startswith(path_prefix)]

    def challenge(self, scope: str | None) -> str:
        value = f'Bearer realm="{self.realm}",service="registry.test"'
        return value + (f',scope="{scope}"' if scope else "")


WORLD = web.AppKey("world", World)
RATE_HEADERS = {
    "ratelimit-limit": "100;w=21600",
    "ratelimit-remaining": "76;w=21600",
    "docker-ratelimit-source": "192.0.2.7",
}


async def _registry(request: web.Request, world: World) -> web.StreamResponse:
    path = request.path
    auth = request.headers.get("Authorization", "")
    granted = world.tokens.get(auth.removeprefix("Bearer "), set()) if auth.startswith("Bearer ") else None
    if path == "/v2/see-other":
        return web.Response(status=303, headers={"Location": "https://cdn.test/after-303"})
    if path == "/v2/":
        if granted is None:
            return web.Response(status=401, headers={"WWW-Authenticate": world.challenge(None)})
        return web.json_response({})
    match = re.fullmatch(r"/v2/(.+)/(blobs/uploads)/", path) or re.fullmatch(
        r"/v2/(.+)/(manifests|blobs)/(.+)", path
    )
    if match is None:
        return web.Response(status=404)
    name, kind, ref = match.group(1), match.group(2), match.group(3) if match.lastindex == 3 else ""
    if name.startswith("limited/"):
        return web.Response(status=429, headers={"Retry-After": "120", **RATE_HEADERS})
    if name.startswith("slow/"):
        await asyncio.sleep(3)
    needed = f"repository:{name}:" + ("pull,push" if kind == "blobs/uploads" else "pull")
    if granted is None or needed not in granted:
        error = ',error="insufficient_scope"' if granted is not None else ""
        return web.Response(
            status=401,
            headers={"WWW-Authenticate": world.challenge(needed) + error, "Content-Type": "application/json"},
            body=b'{"errors":[{"code":"UNAUTHORIZED"}]}',
        )
    if kind == "blobs/uploads":
        received = 0
        async for chunk in request.content.iter_chunked(65536):
            received += len(chunk)
        world.seen[-1].body_bytes = received
        return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/sha256:done"})
    if name.startswith("moved/"):  # like registry.k8s.io: everything continues on another registry
        return web.Response(status=307, headers={"Location": f"https://ar.test{request.path_qs}"})
    if kind == "blobs" and ref.startswith("sha256:loop"):
        end = ref.removeprefix("sha256:loop")
        return web.Response(status=307, headers={"Location": f"https://cdn.test/loop/1?end={end}"})
    if kind == "blobs":
        return web.Response(status=307, headers={"Location": "https://cdn.test/one?sig=a%2Fb"})
    return web.json_response({"schemaVersion": 2, "name": name, "ref": ref}, headers=RATE_HEADERS)


async def _realm(request: web.Request, world: World) -> web.StreamResponse:
    authorized = request.headers.get("Authorization") == BASIC
    if request.headers.get("Authorization") and not authorized:
        return web.Response(status=401)
    scopes = set(request.query.getall("scope", []))
    granted = {s for s in scopes if authorized or (s.split(":")[1] in world.public and s.endswith(":pull"))}
    token = f"tok{len(world.tokens)}"
    world.tokens[token] = granted
    issued = datetime.datetime.now(datetime.UTC).isoformat()
    return web.json_response({"access_token": token, "expires_in": world.expires_in, "issued_at": issued})


async def _cdn(request: web.Request, world: World) -> web.StreamResponse:
    path = request.path
    if path == "/one":
        return web.Response(status=302, headers={"Location": "/two"})
    if path == "/two":
        return web.Response(status=301, headers={"Location": "https://cdn2.test/final"})
    if path == "/final":
        return web.Response(body=b"blob-bytes")
    if path == "/after-303":
        return web.Response(text=request.method)
    if path.startswith("/loop/"):
        step, end = int(path.rsplit("/", 1)[1]), int(request.query["end"])
        if step >= end:
            return web.Response(text=f"arrived after {step}")
        return web.Response(status=302, headers={"Location": f"/loop/{step + 1}?end={end}"})
    return web.Response(status=404)


async def _artifact_registry(request: web.Request, world: World) -> web.StreamResponse:
    """A second registry with its own realm (evil.test here, to prove it never sees credentials)."""
    name = request.path.removeprefix("/v2/").rsplit("/", 2)[0]
    scope = f"repository:{name}:pull"
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if scope not in world.tokens.get(token, set()):
        challenge = f'Bearer realm="https://evil.test/token",service="ar.test",scope="{scope}"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})
    return web.Response(body=b"from-the-other-registry")


async def _basic(request: web.Request, world: World) -> web.StreamResponse:
    if request.headers.get("Authorization") != BASIC:
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="basic.test"'})
    return web.Response(text="welcome")


async def _dispatch(request: web.Request) -> web.StreamResponse:
    world = request.app[WORLD]
    host = request.host.split(":")[0]
    world.seen.append(
        Seen(host, request.method, request.path_qs, request.headers.get("Authorization"), request.host)
    )
    if host == "registry.test":
        return await _registry(request, world)
    if host in ("auth.test", "evil.test"):
        return await _realm(request, world)
    if host in ("cdn.test", "cdn2.test"):
        return await _cdn(request, world)
    if host == "basic.test":
        return await _basic(request, world)
    if host == "ar.test":
        return await _artifact_registry(request, world)
    return web.Response(status=421)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    ca_file, context = make_server_context(tmp_path, NAMES)
    state = World(ca_file=ca_file)
    context.sni_callback = lambda _sock, name, _ctx: state.sni.append(name)  # type: ignore[assignment,misc]
    app = web.Application()
    app[WORLD] = state
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    state.port = runner.addresses[0][1]
    yield state
    await runner.cleanup()


REGISTRY = RegistryConfig(host="registry.test", auth_hosts=("auth.test",))
MANIFEST = "/v2/team/app/manifests/v1"
ALICE = Credential(scope="registry.test", username="alice", password=Secret(PASSWORD))


def make_config(world: World, **changes: object) -> Config:
    values: dict[str, object] = {
        "registries": (REGISTRY,),
        "resolve": tuple(ResolveOverride(name, None, "127.0.0.1", world.port) for name in NAMES),
        "upstream_ca": world.ca_file,
        "timeouts": Timeouts(proxy_connect=5, proxy_read=5),
    }
    values.update(changes)
    return Config(**values)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def make_client() -> AsyncIterator[type[UpstreamClient]]:
    clients: list[UpstreamClient] = []

    class Tracked(UpstreamClient):
        async def start(self) -> None:
            clients.append(self)
            await super().start()

    yield Tracked
    for client in clients:
        await client.close()


async def started(client: UpstreamClient) -> UpstreamClient:
    await client.start()
    return client


# -- token flow -----------------------------------------------------------------------------------


async def test_bearer_token_fetched_once_and_reused_without_a_second_challenge(world, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    for _ in range(2):
        response = await client.request(REGISTRY, "GET", "/v2/team/app/manifests/v1", repository="team/app")
        assert response.status == 200
        assert b'"team/app"' in await response.read(1 << 20)
    assert len(world.hits("auth.test")) == 1
    registry_hits = world.hits("registry.test")
    assert [h.authorization is None for h in registry_hits] == [True, False, False]
    assert world.hits("auth.test")[0].authorization == BASIC
    assert "tok0" not in caplog.text
    assert_no_secret(caplog.text)


async def test_concurrent_requests_share_one_token_fetch(world, make_client):
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    await (await client.request(REGISTRY, "GET", "/v2/", repository=None)).release()
    responses = await asyncio.gather(
        *(client.request(REGISTRY, "GET", MANIFEST, repository="team/app") for _ in range(8))
    )
    assert {r.status for r in responses} == {200}
    for response in responses:
        await response.release()
    assert len(world.hits("auth.test", "/token?service=registry.test&scope=repository")) == 1


async def test_expired_token_is_refreshed_from_the_realm(world, make_client):
    clock = Clock()
    client = await started(make_client(make_config(world, credentials=(ALICE,)), clock=clock))
    path = "/v2/team/app/manifests/v1"
    await (await client.request(REGISTRY, "GET", path, repository="team/app")).release()
    clock.now += 100
    await (await client.request(REGISTRY, "GET", path, repository="team/app")).release()
    assert len(world.hits("auth.test")) == 1
    clock.now += 300
    response = await client.request(REGISTRY, "GET", path, repository="team/app")
    assert response.status == 200
    await response.release()
    assert len(world.hits("auth.test")) == 2
    # The refreshed token was used up front: no new challenge round trip.
    assert world.hits("registry.test")[-1].authorization == "Bearer tok1"


async def test_anonymous_token_for_public_repository_without_credentials(world, make_client):
    client = await started(make_client(make_config(world)))
    path = "/v2/library/alpine/manifests/3"
    response = await client.request(REGISTRY, "GET", path, repository="library/alpine")
    assert response.status == 200
    await response.release()
    assert world.hits("auth.test")[0].authorization is None


async def test_without_credentials_the_upstream_challenge_is_returned_unchanged(world, make_client):
    client = await started(make_client(make_config(world)))
    response = await client.request(REGISTRY, "GET", "/v2/team/app/manifests/v1", repository="team/app")
    assert response.status == 401
    first_challenge = world.challenge("repository:team/app:pull")
    assert response.headers["WWW-Authenticate"] == first_challenge
    assert await response.read(1024) == b'{"errors":[{"code":"UNAUTHORIZED"}]}'
    # The anonymous attempt happened, and was not sent with anything secret.
    assert [h.authorization for h in world.hits("auth.test")] == [None]


async def test_client_authorization_is_passed_through_unchanged(world, make_client):
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    response = await client.request(
        REGISTRY,
        "GET",
        "/v2/team/app/manifests/v1",
        repository="team/app",
        client_authorization="Bearer client-own-token",
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="https://auth.test/token"')
    await response.release()
    assert [h.authorization for h in world.hits("registry.test")] == ["Bearer client-own-token"]
    assert world.hits("auth.test") == []


async def test_foreign_realm_gets_no_credentials_and_a_warning(world, make_client, caplog):
    world.realm = "https://evil.test/token"
    caplog.set_level(logging.DEBUG, logger="appliance")
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    response = await client.request(REGISTRY, "GET", "/v2/team/app/manifests/v1", repository="team/app")
    assert response.status == 401  # anonymous token does not cover the private repository
    await response.release()
    assert [h.authorization for h in world.hits("evil.test")] == [None]
    assert "evil.test" in caplog.text
    assert_no_secret(caplog.text)


async def test_basic_challenge_is_answered_with_basic_credentials(world, make_client):
    registry = RegistryConfig(host="basic.test")
    credential = Credential(scope="basic.test", username="alice", password=Secret(PASSWORD))
    client = await started(make_client(make_config(world, registries=(registry,), credentials=(credential,))))
    for _ in range(2):
        response = await client.request(registry, "GET", "/v2/", repository=None)
        assert response.status == 200
        assert await response.read(100) == b"welcome"
    # One challenge, then Basic sent up front.
    assert [h.authorization for h in world.hits("basic.test")] == [None, BASIC, BASIC]


async def test_basic_challenge_without_credentials_is_returned(world, make_client):
    registry = RegistryConfig(host="basic.test")
    client = await started(make_client(make_config(world, registries=(registry,))))
    response = await client.request(registry, "GET", "/v2/")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="basic.test"'
    await response.release()


# -- redirects ------------------------------------------------------------------------------------


async def test_redirect_chain_across_hosts_without_authorization_on_the_cdn(world, make_client):
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    response = await client.request(REGISTRY, "GET", "/v2/team/app/blobs/sha256:abc", repository="team/app")
    assert response.status == 200
    assert await response.read(100) == b"blob-bytes"
    assert response.url == "https://cdn2.test/final"
    cdn = world.hits("cdn.test") + world.hits("cdn2.test")
    assert [h.path_qs for h in cdn] == ["/one?sig=a%2Fb", "/two", "/final"]  # relative resolved on cdn.test
    assert all(h.authorization is None for h in cdn)
    assert world.hits("registry.test")[-1].authorization.startswith("Bearer ")


async def test_client_authorization_is_not_sent_to_the_cdn(world, make_client):
    client = await started(make_client(make_config(world)))
    token = "Bearer client-token"
    world.tokens["client-token"] = {"repository:team/app:pull"}
    path = "/v2/team/app/blobs/sha256:abc"
    response = await client.request(REGISTRY, "GET", path, repository="team/app", client_authorization=token)
    assert await response.read(100) == b"blob-bytes"
    assert [h.authorization for h in world.hits("registry.test")] == [token]
    assert all(h.authorization is None for h in world.hits("cdn.test") + world.hits("cdn2.test"))
    assert world.hits("auth.test") == []


async def test_five_redirects_are_followed(world, make_client):
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    response = await client.request(REGISTRY, "GET", "/v2/team/app/blobs/sha256:loop5", repository="team/app")
    assert await response.read(100) == b"arrived after 5"


async def test_six_redirects_are_an_error(world, make_client):
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    with pytest.raises(UpstreamError) as caught:
        await client.request(REGISTRY, "GET", "/v2/team/app/blobs/sha256:loop6", repository="team/app")
    assert "more than 5 redirects" in str(caught.value)
    assert len(world.hits("cdn.test", "/loop/")) == 5


async def test_303_turns_the_request_into_a_get(world, make_client):
    client = await started(make_client(make_config(world)))
    response = await client.request(REGISTRY, "POST", "/v2/see-other", headers={"Content-Type": "text/plain"})
    assert await response.read(100) == b"GET"
    assert [h.method for h in world.hits("cdn.test")] == ["GET"]


async def test_redirect_not_followed_when_asked(world, make_client):
    client = await started(make_client(make_config(world)))
    response = await client.request(REGISTRY, "POST", "/v2/see-other", follow_redirects=False)
    assert response.status == 303
    await response.release()
    assert world.hits("cdn.test") == []


# -- connections and TLS --------------------------------------------------------------------------


async def test_resolve_override_keeps_sni_certificate_and_host_for_the_made_up_name(world, make_client):
    registry = RegistryConfig(host="registry.test:5000")
    config = make_config(
        world,
        registries=(registry,),
        resolve=(ResolveOverride("registry.test", 5000, "127.0.0.1", world.port),),
    )
    client = await started(make_client(config))
    response = await client.request(registry, "GET", "/v2/")
    assert response.status == 401  # reached the registry role, over verified TLS
    await response.release()
    assert world.sni == ["registry.test"]
    assert world.seen[0].host_header == "registry.test:5000"


async def test_untrusted_certificate_fails_with_the_host_and_reason(world, make_client):
    client = await started(make_client(make_config(world, upstream_ca=None, credentials=(ALICE,))))
    with pytest.raises(UpstreamError) as caught:
        await client.request(REGISTRY, "GET", "/v2/")
    message = str(caught.value)
    assert message.startswith("registry.test: certificate verify failed for registry.test")
    assert caught.value.status is None
    assert_no_secret(message)
    assert world.seen == []


async def test_insecure_applies_to_that_registry_only(world, make_client):
    insecure = RegistryConfig(host="cdn.test", insecure=True)
    config = make_config(world, upstream_ca=None, registries=(REGISTRY, insecure))
    client = await started(make_client(config))
    response = await client.request(insecure, "GET", "/final")
    assert await response.read(100) == b"blob-bytes"
    with pytest.raises(UpstreamError, match="certificate verify failed"):
        await client.request(REGISTRY, "GET", "/v2/")


async def test_per_registry_ca_file_is_trusted(world, make_client):
    registry = RegistryConfig(host="registry.test", ca_file=world.ca_file)
    client = await started(make_client(make_config(world, upstream_ca=None, registries=(registry,))))
    response = await client.request(registry, "GET", "/v2/")
    assert response.status == 200  # verified TLS, then an anonymous token
    await response.release()
    assert world.sni[0] == "registry.test"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_names_the_host_and_no_secret(world, make_client, caplog):
    registry = RegistryConfig(host="refused.test")
    config = make_config(
        world,
        registries=(registry,),
        credentials=(ALICE,),
        resolve=(ResolveOverride("refused.test", None, "127.0.0.1", _closed_port()),),
    )
    client = await started(make_client(config))
    with pytest.raises(UpstreamError) as caught:
        await client.request(registry, "GET", "/v2/x/manifests/1", repository="x")
    assert str(caught.value).startswith("refused.test: cannot connect to refused.test:443")
    assert_no_secret(str(caught.value) + caplog.text)


async def test_slow_upstream_times_out_with_a_one_line_reason(world, make_client):
    config = make_config(world, credentials=(ALICE,), timeouts=Timeouts(proxy_connect=5, proxy_read=0.5))
    client = await started(make_client(config))
    with pytest.raises(UpstreamError) as caught:
        await client.request(REGISTRY, "GET", "/v2/slow/app/manifests/1", repository="slow/app")
    assert "timed out" in str(caught.value) and "registry.test" in str(caught.value)


# -- push -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("length_header", [False, True], ids=["chunked", "content-length"])
async def test_push_body_is_streamed_once_after_authorizing_first(world, make_client, length_header):
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    produced = {"starts": 0, "bytes": 0}

    async def body() -> AsyncIterator[bytes]:
        produced["starts"] += 1
        for _ in range(64):
            chunk = b"x" * 65536
            produced["bytes"] += len(chunk)
            yield chunk

    response = await client.request(
        REGISTRY,
        "POST",
        "/v2/team/app/blobs/uploads/",
        body=body(),
        repository="team/app",
        actions=("pull", "push"),
        headers={"Content-Type": "application/octet-stream"}
        | ({"Content-Length": str(64 * 65536)} if length_header else {}),
    )
    assert response.status == 201
    assert response.headers["Location"] == "/v2/team/app/blobs/sha256:done"
    await response.release()
    posts = [h for h in world.hits("registry.test") if h.method == "POST"]
    assert len(posts) == 1 and posts[0].body_bytes == 64 * 65536
    assert produced == {"starts": 1, "bytes": 64 * 65536}
    assert [h.path_qs for h in world.hits("registry.test") if h.method == "GET"] == ["/v2/"]
    assert "scope=repository:team/app:pull,push" in world.hits("auth.test")[0].path_qs.replace("%2C", ",")


# -- rate limits ----------------------------------------------------------------------------------


async def test_ratelimit_headers_are_kept_per_registry(world, make_client):
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    assert client.rate_limit(REGISTRY) is None
    await (await client.request(REGISTRY, "GET", MANIFEST, repository="team/app")).release()
    state = client.rate_limit(REGISTRY)
    assert state is not None
    assert (state.limit.value, state.limit.window) == (100, 21600)  # type: ignore[union-attr]
    assert state.remaining.value == 76  # type: ignore[union-attr]
    assert state.source == "192.0.2.7"
    assert state.blocked_until is None


async def test_429_with_retry_after_blocks_pulls_without_contacting_upstream(world, make_client):
    clock = Clock()
    client = await started(make_client(make_config(world, credentials=(ALICE,)), clock=clock))
    path = "/v2/limited/app/manifests/v1"
    response = await client.request(REGISTRY, "GET", path, repository="limited/app")
    assert response.status == 429
    await response.release()
    state = client.rate_limit(REGISTRY)
    assert state is not None and state.blocked_until == pytest.approx(clock.now + 120)
    before = len(world.seen)
    with pytest.raises(UpstreamError) as caught:
        await client.request(REGISTRY, "GET", "/v2/limited/app/blobs/sha256:abc", repository="limited/app")
    assert caught.value.status == 429
    assert len(world.seen) == before
    clock.now += 121
    response = await client.request(REGISTRY, "GET", path, repository="limited/app")
    assert response.status == 429 and len(world.seen) == before + 1
    await response.release()


# -- outbound proxy -------------------------------------------------------------------------------


async def test_outbound_proxy_carries_plain_http_requests_with_its_credentials(make_client, caplog):
    seen: list[tuple[str, str | None]] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append((str(request.url), request.headers.get("Proxy-Authorization")))
        return web.Response(text="via proxy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        registry = RegistryConfig(host="lab.test:5000", scheme=Scheme.HTTP)
        config = Config(
            registries=(registry,), upstream_proxy=f"http://bob:{PROXY_PASSWORD}@127.0.0.1:{port}"
        )
        client = await started(make_client(config))
        response = await client.request(registry, "GET", "/v2/")
        assert await response.read(100) == b"via proxy"
        expected = "Basic " + base64.b64encode(f"bob:{PROXY_PASSWORD}".encode()).decode()
        assert seen == [("http://lab.test:5000/v2/", expected)]
    finally:
        await runner.cleanup()
    closed = Config(
        registries=(registry,), upstream_proxy=f"http://bob:{PROXY_PASSWORD}@127.0.0.1:{_closed_port()}"
    )
    client = await started(make_client(closed))
    with pytest.raises(UpstreamError) as caught:
        await client.request(registry, "GET", "/v2/")
    assert "outbound proxy" in str(caught.value)
    assert_no_secret(str(caught.value) + caplog.text)


async def test_a_redirect_to_another_registry_gets_an_anonymous_token_from_that_registrys_realm(
    world, make_client
):
    world.public.add("moved/pause")
    client = await started(make_client(make_config(world, credentials=(ALICE,))))
    response = await client.request(
        REGISTRY, "GET", "/v2/moved/pause/blobs/sha256:abc", repository="moved/pause"
    )
    assert response.status == 200
    assert await response.read(100) == b"from-the-other-registry"
    # Our credentials went to our own realm only; the other registry's realm was asked anonymously.
    assert [h.authorization for h in world.hits("evil.test")] == [None]
    ar = world.hits("ar.test")
    assert ar[0].authorization is None and ar[-1].authorization.startswith("Bearer ")
    assert all(not (h.authorization or "").startswith("Basic") for h in ar)
