"""Issue 19: per-repository credentials on Basic registries.

The pure rule for when a Basic-challenged ``/v2/`` ping is the engine's to answer, and the upstream
client against an in-process Basic registry whose accounts each read only some repositories: the
repository-prefix account wins over the registry-level one even where that one could read more.

The end-to-end behaviour (real nginx + distribution, skopeo in both modes) is
``tests/e2e/test_basic_prefix_credentials.py``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from appliance.config.model import (
    Config,
    Credential,
    RegistryConfig,
    ResolveOverride,
    Scheme,
    Secret,
    Timeouts,
)
from appliance.upstream.challenges import Challenge, repository_accounts_answer_ping
from appliance.upstream.client import UpstreamClient

PRIVATE = RegistryConfig(host="private.test", aliases=("alias.test",))
BASIC = Challenge("basic", (("realm", "private"),))
BEARER = Challenge("bearer", (("realm", "https://private.test/token"),))


def cred(scope: str, user: str = "u") -> Credential:
    return Credential(scope=scope, username=user, password=Secret("canary-" + user))


@pytest.mark.parametrize("scope", ["private.test/secret", "alias.test/team/a"])
def test_a_basic_ping_is_answered_for_a_registry_whose_accounts_are_all_per_repository(scope: str) -> None:
    assert repository_accounts_answer_ping([cred(scope)], PRIVATE, BASIC)


@pytest.mark.parametrize(
    ("credentials", "challenge"),
    [
        # A registry-level account answers the ping itself.
        ([cred("private.test/secret", "team"), cred("private.test", "all")], BASIC),
        # Token registries answer the ping with an anonymous token.
        ([cred("private.test/secret")], BEARER),
        # No account of ours for this registry: the client's own login takes over.
        ([], BASIC),
        ([cred("other.test/secret")], BASIC),
        ([cred("private.test/secret")], None),
    ],
    ids=["registry-level", "bearer", "none", "other-registry", "no-challenge"],
)
def test_every_other_ping_challenge_goes_to_the_client(
    credentials: list[Credential], challenge: Challenge | None
) -> None:
    assert not repository_accounts_answer_ping(credentials, PRIVATE, challenge)


# -- the upstream client against a Basic registry with per-repository accounts -------------------

PASSWORDS = {"team-a": "canary-a-3e1f", "team-b": "canary-b-9c07", "admin": "canary-admin-55d2"}
# Who may read what: team-a only team-a/*, admin everything (the /v2/ ping included).
READERS = {"team-a/": {"team-a", "admin"}, "": {"admin"}}


def basic_value(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()


@dataclass
class BasicUpstream:
    port: int = 0
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (path, account or None)


@pytest.fixture
async def basic_upstream() -> AsyncIterator[BasicUpstream]:
    state = BasicUpstream()
    accounts = {basic_value(user): user for user in PASSWORDS}

    async def handle(request: web.Request) -> web.StreamResponse:
        user = accounts.get(request.headers.get("Authorization", ""))
        state.seen.append((request.path, user))
        repository = request.path.removeprefix("/v2/")
        prefix = next((p for p in READERS if p and repository.startswith(p)), "")
        if user not in READERS[prefix]:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="per-repo"'})
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    yield state
    await runner.cleanup()


async def test_the_prefix_account_wins_even_where_the_registry_level_one_could_read_more(
    basic_upstream: BasicUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="appliance")
    registry = RegistryConfig(host=f"per-repo.test:{basic_upstream.port}", scheme=Scheme.HTTP)
    # team-a's prefix is (wrongly) given team-b's account; admin could read it, but must not be used.
    config = Config(
        registries=(registry,),
        credentials=(
            Credential(f"{registry.host}/team-a", "team-b", Secret(PASSWORDS["team-b"])),
            Credential(registry.host, "admin", Secret(PASSWORDS["admin"])),
        ),
        resolve=(ResolveOverride("per-repo.test", None, "127.0.0.1", basic_upstream.port),),
        timeouts=Timeouts(proxy_connect=5, proxy_read=5),
    )
    client = UpstreamClient(config)
    await client.start()
    try:
        statuses = {}
        for path, repository in (
            ("/v2/", None),
            ("/v2/team-a/app/manifests/v1", "team-a/app"),
            ("/v2/shared/app/manifests/v1", "shared/app"),
        ):
            response = await client.request(registry, "GET", path, repository=repository)
            statuses[path] = response.status
            await response.release()
    finally:
        await client.close()
    assert statuses == {"/v2/": 200, "/v2/team-a/app/manifests/v1": 401, "/v2/shared/app/manifests/v1": 200}
    used = {(path, user) for path, user in basic_upstream.seen if user is not None}
    assert ("/v2/team-a/app/manifests/v1", "admin") not in used
    assert ("/v2/team-a/app/manifests/v1", "team-b") in used
    for password in PASSWORDS.values():
        assert password not in caplog.text
