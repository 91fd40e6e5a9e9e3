"""Issue 14 item 5: a bearer-token registry with its own, separate token server, configured seed-style.

The seed's README has AUTH_REGISTRIES name the *auth server's* host for such registries
(``auth.docker.io`` for Docker Hub, ``gitlab.example`` for ``registry.gitlab.example``).  Here the
registry is CNCF distribution as ``registry.test`` and the token server a separate process as
``token.test`` (its certificate carries that name); both names reach loopback only through the
engine's ``resolve`` overrides.  The appliance gets its registries and credentials from the seed's
environment variables only, and clients hold no credentials: a pull works only if the engine sends
the token server's own credential with its token requests.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.appliance import Appliance
from tests.fixtures.clients import ClientResult, skopeo_copy
from tests.fixtures.connectproxy import ConnectProxy
from tests.fixtures.images import build_layout
from tests.fixtures.pki import REGISTRY_HOST, TOKEN_HOST, TestPKI
from tests.fixtures.registry import RegistryAuth, RegistryFactory, UpstreamRegistry
from tests.fixtures.tokenserver import Grant, TokenServer

pytestmark = pytest.mark.e2e

REPOSITORY = "private/app"


@dataclass(frozen=True, slots=True)
class World:
    registry: UpstreamRegistry
    token_server: TokenServer
    passwords: Mapping[str, str]
    manifest_digest: str

    @property
    def token_host(self) -> str:
        return f"{TOKEN_HOST}:{self.token_server.port}"


@pytest.fixture
def world(tmp_path: Path, pki: TestPKI, registry_factory: RegistryFactory) -> Iterator[World]:
    passwords = {user: f"canary-{user}-{secrets.token_hex(8)}" for user in ("reader", "pusher")}
    server = TokenServer(
        tmp_path / "token",
        pki,
        users=passwords,
        grants=[
            Grant("reader", "private/*", frozenset({"pull"})),
            Grant("pusher", "*", frozenset({"pull", "push"})),
        ],
    )
    server.start()
    try:
        registry = registry_factory(
            auth=RegistryAuth.TOKEN,
            token=server.settings(realm_host=TOKEN_HOST),
            creds=("pusher", passwords["pusher"]),
        )
        # The realm is https://token.test:PORT/token: the push reaches it through a CONNECT proxy
        # that knows the made-up names, as the appliance does through its overrides.
        built = build_layout(tmp_path / "layout", layer_sizes=(30_000, 12_000), seed=14)
        with ConnectProxy({REGISTRY_HOST: "127.0.0.1", TOKEN_HOST: "127.0.0.1"}) as proxy:
            pushed = skopeo_copy(
                built.source,
                f"docker://{registry.name_port}/{REPOSITORY}:v1",
                https_proxy=proxy.url,
                cert_dir=pki.cert_dir,
                creds=("pusher", passwords["pusher"]),
                extra=["--preserve-digests"],
            ).check()
        assert pushed.digest == built.manifest_digest
        yield World(registry, server, passwords, built.manifest_digest)
    finally:
        server.stop()


def _seed_appliance(tmp_path: Path, pki: TestPKI, world: World, registries: str) -> Appliance:
    """An appliance configured the seed's way: REGISTRIES and AUTH_REGISTRIES only."""
    token_host = world.token_host
    return Appliance(
        tmp_path / "appliance",
        upstream_ca=pki.ca_file,
        extra_resolve=[
            f"{world.registry.name_port}={world.registry.host_port}",
            f"{token_host}=127.0.0.1:{world.token_server.port}",
        ],
        env={
            "REGISTRIES": registries,
            "AUTH_REGISTRIES": f"{token_host}:reader:{world.passwords['reader']}",
        },
    )


def _pull(appliance: Appliance, mode: str, reference: str, dest: Path) -> ClientResult:
    if mode == "mirror":
        conf = dest.parent / "registries.conf"
        text = appliance.get("/setup/podman").decode()
        conf.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n\n' + text)
        return skopeo_copy(f"docker://{reference}", f"dir:{dest}", registries_conf=conf)
    return skopeo_copy(
        f"docker://{reference}", f"dir:{dest}", https_proxy=appliance.url, cert_dir=appliance.cert_dir()
    )


@pytest.mark.parametrize("mode", ["mitm", "mirror"])
@pytest.mark.parametrize(
    "token_host_in_registries", [False, True], ids=["registry-only", "token-host-also-in-registries"]
)
def test_a_registry_with_a_separate_token_server_is_pulled_with_the_token_servers_seed_credential(
    tmp_path: Path, pki: TestPKI, world: World, mode: str, token_host_in_registries: bool
) -> None:
    registry = world.registry
    # The seed's README asks for every AUTH_REGISTRIES host in REGISTRIES too; both forms work.
    registries = registry.name_port + (f" {world.token_host}" if token_host_in_registries else "")
    with _seed_appliance(tmp_path, pki, world, registries) as appliance:
        world.token_server.clear_counts()
        reference = f"{registry.name_port}/{REPOSITORY}:v1"
        result = _pull(appliance, mode, reference, tmp_path / "pulled")
        assert result.ok, result.output + appliance.log_text()
        assert result.digest == world.manifest_digest
        assert world.token_server.token_requests(user="reader") >= 1, world.token_server.counts()
        assert world.token_server.refused == 0
        log = appliance.log_text()
        borrowed = [line for line in log.splitlines() if " borrows " in line]
        assert len(borrowed) == 1, log
        assert registry.name_port in borrowed[0] and world.token_host in borrowed[0]
        for password in world.passwords.values():
            assert password not in appliance.log_path.read_text(errors="replace")
            assert password not in result.output
