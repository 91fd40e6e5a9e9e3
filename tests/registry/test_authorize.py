"""The access decision of a registry request: route -> action, ACL -> allowed / denied /
unauthenticated / limited, and the refusal each one is answered with (issue 17.5, 17.7)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from appliance.access.identities import ANONYMOUS_IDENTITY, Identity, IdentityKind
from appliance.config.access import (
    AccessConfig,
    AclRule,
    Action,
    ClientMapping,
    Effect,
    IdentityLimit,
    RateLimit,
)
from appliance.config.model import Config, RegistryConfig
from appliance.errors import ErrorCode
from appliance.events import AccessResult
from appliance.oci import Endpoint, Route, parse_route
from appliance.registry.authorize import Authorization, Authorizer, action_for, mount_source, scope_actions
from appliance.registry.request_context import Mode

ALICE = Identity("alice", IdentityKind.USER, frozenset({"developers"}))
BOB = Identity("bob", IdentityKind.USER)
REGISTRY = "registry.test:5000"
RULES = (
    AclRule("bob", frozenset({Action.PULL, Action.PUSH}), registry=REGISTRY, repository="bob/**"),
    AclRule("@developers", frozenset({Action.PULL}), registry=REGISTRY, repository="shared/*"),
    AclRule("alice", frozenset({Action.TUNNEL}), registry="github.com"),
    AclRule("nodes", frozenset({Action.PULL})),
    AclRule("*", frozenset({Action.PULL}), repository="public/*"),
    AclRule("alice", frozenset({Action.PULL}), repository="bob/**", effect=Effect.DENY),
)


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", "/v2/", None),
        ("GET", "/v2/a/b/manifests/latest", Action.PULL),
        ("HEAD", "/v2/a/manifests/sha256:" + "0" * 64, Action.PULL),
        ("GET", "/v2/a/blobs/sha256:" + "0" * 64, Action.PULL),
        ("HEAD", "/v2/a/blobs/sha256:" + "0" * 64, Action.PULL),
        ("GET", "/v2/a/tags/list", Action.PULL),
        ("GET", "/v2/a/referrers/sha256:" + "0" * 64, Action.PULL),
        ("GET", "/v2/_catalog", Action.PULL),
        ("POST", "/v2/a/blobs/uploads/", Action.PUSH),
        ("PATCH", "/v2/a/blobs/uploads/some-id", Action.PUSH),
        ("GET", "/v2/a/blobs/uploads/some-id", Action.PUSH),  # an upload's status: only its pusher asks
        ("PUT", "/v2/a/manifests/latest", Action.PUSH),
        ("DELETE", "/v2/a/manifests/sha256:" + "0" * 64, Action.PUSH),
        ("DELETE", "/v2/a/blobs/sha256:" + "0" * 64, Action.PUSH),
    ],
)
def test_each_route_and_method_needs_its_action(method: str, path: str, action: Action | None) -> None:
    assert action_for(method, parse_route(path)) is action


def test_a_token_requests_scopes_name_each_repository_and_action() -> None:
    query = [("service", "x"), ("scope", "repository:bob/app:pull,push"), ("scope", "repository:lib/a:pull")]
    assert scope_actions(query) == [
        ("bob/app", Action.PULL),
        ("bob/app", Action.PUSH),
        ("lib/a", Action.PULL),
    ]
    assert scope_actions([("scope", "registry:catalog:*")]) == []


def _authorizer(clock: Callable[[], float] = time.monotonic, **access: object) -> Authorizer:
    values: dict[str, object] = {"enabled": True, "acl": RULES}
    values.update(access)
    config = Config(registries=(RegistryConfig(host=REGISTRY),), access=AccessConfig(**values))  # type: ignore[arg-type]
    return Authorizer(lambda: config, clock)


def _route(repository: str) -> Route:
    return Route(Endpoint.MANIFEST, repository, "latest")


TABLE = [
    # identity, mode, method, repository, result, http status
    (BOB, Mode.TUNNEL, "GET", "bob/private", AccessResult.ALLOWED, None),
    (BOB, Mode.MIRROR, "PUT", "bob/private", AccessResult.ALLOWED, None),
    (ALICE, Mode.TUNNEL, "GET", "bob/private", AccessResult.DENIED, 403),  # the explicit deny
    (ALICE, Mode.MIRROR, "GET", "bob/private", AccessResult.DENIED, 403),  # the same in both modes
    (ALICE, Mode.TUNNEL, "GET", "shared/tools", AccessResult.ALLOWED, None),  # through @developers
    (ALICE, Mode.TUNNEL, "PUT", "shared/tools", AccessResult.DENIED, 403),  # pull only
    (BOB, Mode.TUNNEL, "GET", "shared/tools", AccessResult.DENIED, 403),  # no rule: deny by default
    (None, Mode.MIRROR, "GET", "bob/private", AccessResult.UNAUTHENTICATED, 401),
    (None, Mode.TUNNEL, "GET", "bob/private", AccessResult.UNAUTHENTICATED, 407),
    (None, Mode.FORWARD, "GET", "bob/private", AccessResult.UNAUTHENTICATED, 407),
    (None, Mode.MIRROR, "GET", "public/hello", AccessResult.ALLOWED, None),  # a rule for * admits anyone
]


@pytest.mark.parametrize(("identity", "mode", "method", "repository", "result", "status"), TABLE)
def test_the_acl_decides_each_request_and_a_refusal_says_how(
    identity: Identity | None,
    mode: Mode,
    method: str,
    repository: str,
    result: AccessResult,
    status: int | None,
) -> None:
    decided = _authorizer().authorize(identity, "192.0.2.9", mode, REGISTRY, method, _route(repository))
    assert decided.result == result
    if status is None:
        assert decided.error is None and decided.allowed
        return
    assert decided.error is not None and decided.error.status == status
    if status == 403:
        assert decided.error.code is ErrorCode.DENIED
        assert f"{REGISTRY}/{repository}" in decided.error.message
    if status == 401:
        assert decided.error.headers["WWW-Authenticate"].startswith("Basic realm=")
    if status == 407:
        assert decided.error.headers["Proxy-Authenticate"].startswith("Basic realm=")


def test_the_reason_names_the_deciding_rule_and_a_denial_with_no_rule_says_so() -> None:
    authorizer = _authorizer()
    allowed = authorizer.authorize(BOB, "-", Mode.TUNNEL, REGISTRY, "GET", _route("bob/app"))
    assert allowed.reason == "access.acl[0] (allow bob)"
    nothing = authorizer.authorize(BOB, "-", Mode.TUNNEL, REGISTRY, "GET", _route("other/app"))
    assert nothing.reason == "no access rule allows it"


def test_without_an_identity_the_source_networks_identity_is_used() -> None:
    clients = (ClientMapping(ipaddress.ip_network("10.20.0.0/16"), "nodes"),)
    authorizer = _authorizer(clients=clients)
    mapped = authorizer.authorize(None, "10.20.3.4", Mode.MIRROR, REGISTRY, "GET", _route("any/thing"))
    assert mapped.result == AccessResult.ALLOWED and mapped.identity is not None
    assert mapped.identity.name == "nodes"
    other = authorizer.authorize(None, "10.21.3.4", Mode.MIRROR, REGISTRY, "GET", _route("any/thing"))
    assert other.result == AccessResult.UNAUTHENTICATED and other.identity is ANONYMOUS_IDENTITY


def test_the_ping_needs_an_identity_but_no_rule() -> None:
    authorizer = _authorizer()
    ping = Route(Endpoint.PING)
    assert authorizer.authorize(BOB, "-", Mode.TUNNEL, REGISTRY, "GET", ping).result == AccessResult.ALLOWED
    anonymous = authorizer.authorize(None, "-", Mode.MIRROR, REGISTRY, "GET", ping)
    assert anonymous.result == AccessResult.UNAUTHENTICATED


def test_a_token_request_is_refused_when_any_scope_is_not_allowed() -> None:
    authorizer = _authorizer()
    ping = Route(Endpoint.PING)
    own = [("bob/app", Action.PULL), ("bob/app", Action.PUSH)]
    assert authorizer.authorize(BOB, "-", Mode.TUNNEL, REGISTRY, "GET", ping, scopes=own).allowed
    theirs = [("shared/tools", Action.PULL), ("bob/app", Action.PULL)]
    refused = authorizer.authorize(ALICE, "-", Mode.TUNNEL, REGISTRY, "GET", ping, scopes=theirs)
    assert refused.result == AccessResult.DENIED
    assert refused.error is not None and "bob/app" in refused.error.message


def test_a_tunnel_is_the_tunnel_action_on_the_connect_host() -> None:
    authorizer = _authorizer()
    assert authorizer.tunnel(ALICE, "-", "github.com").result == AccessResult.ALLOWED
    denied = authorizer.tunnel(BOB, "-", "github.com")
    assert denied.result == AccessResult.DENIED and denied.error is not None and denied.error.status == 403
    assert authorizer.tunnel(ALICE, "-", "gitlab.com").result == AccessResult.DENIED


def test_with_access_control_off_everything_is_allowed_and_nothing_is_recorded() -> None:
    authorizer = _authorizer(enabled=False)
    decided = authorizer.authorize(None, "-", Mode.TUNNEL, REGISTRY, "DELETE", _route("bob/app"))
    assert decided.allowed and decided.result == "" and decided.identity is None
    assert authorizer.tunnel(None, "-", "example.com").result == ""


def test_over_the_request_rate_the_answer_is_429_with_retry_after() -> None:
    now = [0.0]
    limits = (IdentityLimit("bob", RateLimit(requests_per_minute=2)),)
    authorizer = _authorizer(lambda: now[0], limits=limits)

    def ask(who: Identity) -> Authorization:
        return authorizer.authorize(who, "-", Mode.TUNNEL, REGISTRY, "GET", _route("bob/app"))

    assert ask(BOB).allowed and ask(BOB).allowed
    third = ask(BOB)
    assert third.result == AccessResult.LIMITED and third.error is not None
    assert third.error.status == 429 and third.error.code is ErrorCode.TOOMANYREQUESTS
    assert third.error.headers["Retry-After"] == "30"  # one request back every 30 s at 2/minute
    now[0] += 30.0
    assert ask(BOB).allowed
    # Alice has no limit of her own and no default applies.
    assert all(ask(ALICE).result == AccessResult.DENIED for _ in range(10))


def test_a_decision_follows_a_reloaded_configuration() -> None:
    config = [Config(registries=(RegistryConfig(host=REGISTRY),), access=AccessConfig(enabled=True))]
    authorizer = Authorizer(lambda: config[0])
    assert not authorizer.authorize(BOB, "-", Mode.TUNNEL, REGISTRY, "GET", _route("bob/app")).allowed
    config[0] = replace(config[0], access=replace(config[0].access, acl=RULES))
    assert authorizer.authorize(BOB, "-", Mode.TUNNEL, REGISTRY, "GET", _route("bob/app")).allowed


def test_a_cross_repository_mount_needs_pull_on_the_repository_it_mounts_from() -> None:
    upload = parse_route("/v2/bob/app/blobs/uploads/")
    query = [("mount", "sha256:" + "1" * 64), ("from", "shared/tools")]
    assert mount_source("POST", upload, query) == [("shared/tools", Action.PULL)]
    assert mount_source("POST", upload, [("digest", "x")]) == []
    authorizer = _authorizer()
    own = authorizer.authorize(BOB, "-", Mode.TUNNEL, REGISTRY, "POST", upload)
    assert own.allowed
    scopes = mount_source("POST", upload, query)
    mounted = authorizer.authorize(BOB, "-", Mode.TUNNEL, REGISTRY, "POST", upload, scopes=scopes)
    assert mounted.result == AccessResult.DENIED  # bob may push to bob/**, not read shared/*
    assert mounted.error is not None and "shared/tools" in mounted.error.message
