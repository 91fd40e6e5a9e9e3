"""Issue 14 item 5: a credential keyed by a separate token server's host (the seed's AUTH_REGISTRIES form).

One loopback TLS server with a certificate for several made-up names plays the registry
(``registry.test``, whose challenge names ``https://jwt.test/jwt/auth``) and two token servers
(``jwt.test`` and ``other-jwt.test``), dispatching on the ``Host`` header; ``--resolve`` overrides
send every name to its port.  Every request is recorded, so the tests assert which host saw which
``Authorization``.  Passwords are canaries that must never show in the log.
"""

from __future__ import annotations

import base64
import logging
import re
import shlex
import ssl
import subprocess
import sys
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
from appliance.upstream.challenges import realm_credential, scope_repository
from appliance.upstream.client import UpstreamClient
from tests.fixtures.pki import issue_server_cert, make_ca, pem

NAMES = ("registry.test", "jwt.test", "other-jwt.test", "elsewhere.test")
READER_PASSWORD = "canary-reader-7f3a9c"
TEAM_PASSWORD = "canary-team-51be02"
OWN_PASSWORD = "canary-own-0d44e1"
SECRETS = (READER_PASSWORD, TEAM_PASSWORD, OWN_PASSWORD)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def cred(scope: str, user: str, password: str) -> Credential:
    return Credential(scope=scope, username=user, password=Secret(password))


@dataclass
class Seen:
    host: str
    path_qs: str
    authorization: str | None


@dataclass
class World:
    port: int = 0
    ca_file: Path = Path()
    realm: str = "https://jwt.test/jwt/auth"
    # Basic value -> the account it proves, per token host.
    accounts: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # token -> (user, scopes)
    seen: list[Seen] = field(default_factory=list)

    def hits(self, host: str) -> list[Seen]:
        return [s for s in self.seen if s.host == host]

    def token_users(self, host: str) -> list[str | None]:
        """Who each token request to ``host`` authenticated as (None: anonymous)."""
        users: list[str | None] = []
        for seen in self.hits(host):
            auth = seen.authorization
            users.append(None if auth is None else self.accounts.get(host, {}).get(auth, "?"))
        return users


WORLD = web.AppKey("world", World)


async def _registry(request: web.Request, world: World) -> web.StreamResponse:
    auth = request.headers.get("Authorization", "")
    granted = world.tokens.get(auth.removeprefix("Bearer "), (None, set()))[1] if auth else set()
    challenge = f'Bearer realm="{world.realm}",service="registry.test"'
    if request.path == "/v2/":
        if not auth.startswith("Bearer "):
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        return web.json_response({})
    match = re.fullmatch(r"/v2/(.+)/manifests/(.+)", request.path)
    if match is None:
        return web.Response(status=404)
    needed = f"repository:{match.group(1)}:pull"
    if needed not in granted:
        return web.Response(status=401, headers={"WWW-Authenticate": f'{challenge},scope="{needed}"'})
    return web.json_response({"schemaVersion": 2, "name": match.group(1)})


async def _token_server(request: web.Request, world: World, host: str) -> web.StreamResponse:
    auth = request.headers.get("Authorization")
    user = None
    if auth is not None:
        user = world.accounts.get(host, {}).get(auth)
        if user is None:
            return web.Response(status=401)
    # Each account may pull what its name says: "reader" everything, "team" only team/*.
    scopes = {
        s
        for s in request.query.getall("scope", [])
        if user == "reader" or (user == "team" and s.startswith("repository:team/"))
    }
    token = f"tok{len(world.tokens)}"
    world.tokens[token] = (user or "", scopes)
    return web.json_response({"token": token, "expires_in": 300})


async def _elsewhere(request: web.Request, world: World) -> web.StreamResponse:
    """An unconfigured host a redirect lands on, whose challenge names the configured token host."""
    auth = request.headers.get("Authorization", "")
    if auth.removeprefix("Bearer ") in world.tokens:
        return web.Response(body=b"bytes from elsewhere")
    scope = "repository:private/app:pull"
    challenge = f'Bearer realm="{world.realm}",service="registry.test",scope="{scope}"'
    return web.Response(status=401, headers={"WWW-Authenticate": challenge})


async def _dispatch(request: web.Request) -> web.StreamResponse:
    world = request.app[WORLD]
    host = request.host.split(":")[0]
    world.seen.append(Seen(host, request.path_qs, request.headers.get("Authorization")))
    if host == "registry.test" and request.path.startswith("/v2/moved/"):
        return web.Response(status=307, headers={"Location": f"https://elsewhere.test{request.path_qs}"})
    if host == "registry.test":
        return await _registry(request, world)
    if host == "elsewhere.test":
        return await _elsewhere(request, world)
    return await _token_server(request, world, host)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    ca_key, ca_cert = make_ca()
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(pem(ca_cert))
    key, cert = issue_server_cert(ca_key, ca_cert, NAMES[0], also=NAMES[1:])
    cert_path, key_path = tmp_path / "leaf.crt", tmp_path / "leaf.key"
    cert_path.write_bytes(pem(cert))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    state = World(ca_file=ca_file)
    state.accounts = {
        "jwt.test": {basic("reader", READER_PASSWORD): "reader", basic("team", TEAM_PASSWORD): "team"},
        "other-jwt.test": {basic("reader", READER_PASSWORD): "reader"},
    }
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


REGISTRY = RegistryConfig(host="registry.test")


def make_config(world: World, *credentials: Credential, registry: RegistryConfig = REGISTRY) -> Config:
    return Config(
        registries=(registry,),
        credentials=credentials,
        resolve=tuple(ResolveOverride(name, None, "127.0.0.1", world.port) for name in NAMES),
        upstream_ca=world.ca_file,
        timeouts=Timeouts(proxy_connect=5, proxy_read=5),
    )


@pytest.fixture
async def make_client() -> AsyncIterator[list[UpstreamClient]]:
    clients: list[UpstreamClient] = []
    yield clients
    for client in clients:
        await client.close()


async def client_for(clients: list[UpstreamClient], config: Config) -> UpstreamClient:
    client = UpstreamClient(config)
    clients.append(client)
    await client.start()
    return client


async def pull(client: UpstreamClient, repository: str, registry: RegistryConfig = REGISTRY) -> int:
    response = await client.request(registry, "GET", f"/v2/{repository}/manifests/v1", repository=repository)
    await response.release()
    return response.status


# -- the engine's own token requests -------------------------------------------------------------


async def test_a_credential_for_the_token_servers_host_is_used_for_token_requests_to_it(
    world: World, make_client: list[UpstreamClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="appliance")
    client = await client_for(make_client, make_config(world, cred("jwt.test", "reader", READER_PASSWORD)))
    for repository in ("private/app", "private/app", "private/other"):
        assert await pull(client, repository) == 200
    assert set(world.token_users("jwt.test")) == {"reader"}
    # The secret went to the token server only: the registry saw tokens, never Basic.
    assert all(
        s.authorization is None or s.authorization.startswith("Bearer ") for s in world.hits("registry.test")
    )
    borrowed = [r.getMessage() for r in caplog.records if " borrows " in r.getMessage()]
    assert len(borrowed) == 1, borrowed
    assert "registry.test" in borrowed[0] and "jwt.test" in borrowed[0] and "reader" in borrowed[0]
    for secret in SECRETS:
        assert secret not in caplog.text


async def test_a_repository_prefix_on_the_token_host_wins_for_its_repositories(
    world: World, make_client: list[UpstreamClient]
) -> None:
    config = make_config(
        world, cred("jwt.test", "reader", READER_PASSWORD), cred("jwt.test/team", "team", TEAM_PASSWORD)
    )
    client = await client_for(make_client, config)
    assert await pull(client, "team/app") == 200
    assert world.token_users("jwt.test") == ["team"]
    world.seen.clear()
    assert await pull(client, "private/app") == 200
    assert world.token_users("jwt.test") == ["reader"]


async def test_the_registrys_own_credential_wins_where_its_config_lets_the_realm_see_it(
    world: World, make_client: list[UpstreamClient]
) -> None:
    registry = RegistryConfig(host="registry.test", auth_hosts=("jwt.test",))
    config = make_config(
        world,
        cred("registry.test", "team", TEAM_PASSWORD),
        cred("jwt.test", "reader", READER_PASSWORD),
        registry=registry,
    )
    client = await client_for(make_client, config)
    assert await pull(client, "team/app", registry) == 200
    assert world.token_users("jwt.test") == ["team"]


@pytest.mark.parametrize(
    ("realm", "scope"),
    [
        ("https://other-jwt.test/jwt/auth", "jwt.test"),  # another host
        ("https://jwt.test:8443/jwt/auth", "jwt.test"),  # another port on that host
        ("https://jwt.test/jwt/auth", "jwt.test:8443"),
        ("http://jwt.test/jwt/auth", "jwt.test"),  # clear text for a TLS registry
    ],
    ids=["other-host", "other-realm-port", "other-credential-port", "plain-http"],
)
async def test_a_token_host_credential_never_goes_anywhere_but_its_own_host_and_port_over_tls(
    world: World,
    make_client: list[UpstreamClient],
    caplog: pytest.LogCaptureFixture,
    realm: str,
    scope: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="appliance")
    world.realm = realm  # every name and port leads to the one server through --resolve
    client = await client_for(make_client, make_config(world, cred(scope, "reader", READER_PASSWORD)))
    assert await pull(client, "private/app") == 401
    assert [s.authorization for s in world.seen if s.host != "registry.test"] in ([], [None])
    assert "as reader" not in caplog.text
    assert " borrows " not in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text


async def test_a_redirect_to_an_unconfigured_host_never_borrows_the_token_hosts_credential(
    world: World, make_client: list[UpstreamClient], caplog: pytest.LogCaptureFixture
) -> None:
    # The host a redirect lands on is no configured registry: a challenge from it naming the token
    # host gets an anonymous token, or a token bought with our credential would go to that host.
    caplog.set_level(logging.DEBUG, logger="appliance")
    client = await client_for(make_client, make_config(world, cred("jwt.test", "reader", READER_PASSWORD)))
    response = await client.request(REGISTRY, "GET", "/v2/moved/blobs/sha256:abc", repository="moved")
    assert response.status == 200
    assert await response.read(100) == b"bytes from elsewhere"
    assert world.token_users("jwt.test") == [None]
    assert world.hits("elsewhere.test")[0].authorization is None
    assert " borrows " not in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text


# -- the pure rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("realm", "registry", "scope", "found"),
    [
        ("https://gitlab.example/jwt/auth", REGISTRY, "gitlab.example", True),
        ("https://gitlab.example:443/jwt/auth", REGISTRY, "gitlab.example", True),
        ("https://GitLab.Example./jwt/auth", REGISTRY, "gitlab.example", True),
        ("https://gitlab.example:5001/jwt/auth", REGISTRY, "gitlab.example:5001", True),
        ("https://gitlab.example:5001/jwt/auth", REGISTRY, "gitlab.example", False),
        ("https://gitlab.example/jwt/auth", REGISTRY, "gitlab.example:5001", False),
        ("https://evil.example/jwt/auth", REGISTRY, "gitlab.example", False),
        ("https://gitlab.example.evil.test/jwt/auth", REGISTRY, "gitlab.example", False),
        ("http://gitlab.example/jwt/auth", REGISTRY, "gitlab.example", False),
        (
            "http://lab.test:8080/auth",
            RegistryConfig("lab.test:5000", scheme=Scheme.HTTP),
            "lab.test:8080",
            True,
        ),
        ("ftp://gitlab.example/jwt/auth", REGISTRY, "gitlab.example", False),
        ("not a url", REGISTRY, "gitlab.example", False),
    ],
)
def test_realm_credential_matches_the_realms_own_host_and_port(
    realm: str, registry: RegistryConfig, scope: str, found: bool
) -> None:
    credential = cred(scope, "reader", READER_PASSWORD)
    assert (realm_credential([credential], realm, registry, "team/app") is credential) is found


def test_realm_credential_prefers_the_longest_repository_prefix_on_the_token_host() -> None:
    host = cred("gitlab.example", "reader", READER_PASSWORD)
    team = cred("gitlab.example/team", "team", TEAM_PASSWORD)
    realm = "https://gitlab.example/jwt/auth"
    assert realm_credential([host, team], realm, REGISTRY, "team/app") is team
    assert realm_credential([host, team], realm, REGISTRY, "teams/app") is host
    assert realm_credential([host, team], realm, REGISTRY, None) is host


@pytest.mark.parametrize(
    ("scope", "repository"),
    [
        ("repository:team/app:pull", "team/app"),
        ("repository:team/app:pull,push", "team/app"),
        ("registry:catalog:*", None),
        ("repository::pull", None),
        ("", None),
        (None, None),
    ],
)
def test_scope_repository(scope: str | None, repository: str | None) -> None:
    assert scope_repository(scope) == repository


# -- configuration: the seed's form survives import-env, the TOML file and export-env ---------------

APPLIANCE = Path(sys.executable).parent / "appliance"


def run_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    return subprocess.run(
        [str(APPLIANCE), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("registries", "auth_registries"),
    [
        ("registry.gitlab.example", f"gitlab.example:reader:{READER_PASSWORD}"),
        ("registry.gitlab.example gitlab.example", f"gitlab.example:reader:{READER_PASSWORD}"),
        ("registry.test:5000", f"token.test:5001:reader:{READER_PASSWORD}"),
        ("registry.test:5000 token.test:5001", f"token.test:5001:reader:{READER_PASSWORD}"),
        ("quay.io", f"gitlab.example/team:team:{TEAM_PASSWORD} gitlab.example:reader:{READER_PASSWORD}"),
    ],
)
def test_token_server_credentials_survive_import_env_the_toml_file_and_export_env(
    tmp_path: Path, registries: str, auth_registries: str
) -> None:
    env = {"REGISTRIES": registries, "AUTH_REGISTRIES": auth_registries}
    config_file = tmp_path / "c.toml"
    imported = run_cli(tmp_path, "config", "import-env", "-o", str(config_file), env=env)
    assert imported.returncode == 0, imported.stderr
    checked = run_cli(tmp_path, "config", "check", "--config", str(config_file))
    assert checked.returncode == 0, checked.stderr
    exported = run_cli(tmp_path, "config", "export-env", "--config", str(config_file))
    assert exported.returncode == 0, exported.stderr
    values = dict(item.split("=", 1) for item in shlex.split(exported.stdout))
    assert values["REGISTRIES"] == registries
    assert values["AUTH_REGISTRIES"] == auth_registries
    for output in (imported.stderr, checked.stdout, checked.stderr, exported.stderr):
        for secret in SECRETS:
            assert secret not in output


def test_config_check_says_a_credential_named_for_no_registry_goes_only_to_token_requests(
    tmp_path: Path,
) -> None:
    env = {
        "REGISTRIES": "registry.gitlab.example",
        "AUTH_REGISTRIES": (
            f"gitlab.example:reader:{READER_PASSWORD} registry.gitlab.example:own:{OWN_PASSWORD}"
        ),
    }
    checked = run_cli(tmp_path, "config", "check", env=env)
    assert checked.returncode == 0, checked.stderr
    lines = {line.split(":", 1)[0].strip(): line for line in checked.stdout.splitlines() if "user '" in line}
    assert "sent only with token requests" in lines["gitlab.example"]
    assert "token requests" not in lines["registry.gitlab.example"]
    for secret in SECRETS:
        assert secret not in checked.stdout + checked.stderr
