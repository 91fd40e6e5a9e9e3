"""ACL evaluation as a table: first match decides, deny by default, globs, groups, aliases."""

from __future__ import annotations

import pytest

from appliance.access.acl import AccessPolicy, AclRequest, evaluate, glob_matches
from appliance.access.identities import ANONYMOUS_IDENTITY, Identity, IdentityKind
from appliance.config.access import AccessConfig, AclRule, Action, Effect, Group
from appliance.config.model import Config
from appliance.config.values import default_registries

PULL, PUSH, TUNNEL, ADMIN = Action.PULL, Action.PUSH, Action.TUNNEL, Action.ADMIN
ALICE = Identity("alice", IdentityKind.USER, frozenset({"developers"}))
BOB = Identity("bob", IdentityKind.USER)
CI = Identity("ci", IdentityKind.ROBOT, frozenset({"runners"}))
NODES = Identity("k8s-nodes", IdentityKind.NETWORK)

RULES = (
    AclRule("bob", frozenset({PULL, PUSH}), registry="ghcr.io", repository="bob/**"),  # 0
    AclRule(
        "@developers", frozenset({PULL}), registry="ghcr.io", repository="bob/secret", effect=Effect.DENY
    ),
    AclRule("@developers", frozenset({PULL}), registry="ghcr.io", repository="*/public"),  # 2
    AclRule("@runners", frozenset({PULL, PUSH}), registry="registry.example:5000", repository="ci/*"),  # 3
    AclRule("k8s-nodes", frozenset({PULL})),  # 4: anything, anywhere
    AclRule("*", frozenset({PULL}), registry="registry-1.docker.io", repository="library/**"),  # 5
    AclRule("alice", frozenset({TUNNEL}), registry="github.com"),  # 6
    AclRule("alice", frozenset({ADMIN})),  # 7
)

TABLE = [
    # identity, registry, repository, action, allowed, deciding rule
    (BOB, "ghcr.io", "bob/app", PULL, True, 0),
    (BOB, "ghcr.io", "bob/deep/nested/app", PUSH, True, 0),
    (BOB, "ghcr.io", "alice/app", PULL, False, None),
    (BOB, "quay.io", "bob/app", PULL, False, None),
    (ALICE, "ghcr.io", "bob/secret", PULL, False, 1),  # explicit deny before the glob that would allow
    (ALICE, "ghcr.io", "bob/app", PULL, False, None),  # bob's rule names bob, not alice
    (ALICE, "ghcr.io", "team/public", PULL, True, 2),
    (ALICE, "ghcr.io", "team/sub/public", PULL, False, None),  # * stays in one segment
    (ALICE, "ghcr.io", "team/public", PUSH, False, None),  # the rule grants pull only
    (CI, "registry.example:5000", "ci/builder", PUSH, True, 3),
    (CI, "registry.example:5000", "ci/a/b", PUSH, False, None),
    (CI, "registry.example", "ci/builder", PULL, False, None),  # another port is another registry
    (NODES, "quay.io", "any/thing", PULL, True, 4),
    (NODES, "quay.io", "any/thing", PUSH, False, None),
    (ANONYMOUS_IDENTITY, "registry-1.docker.io", "library/alpine", PULL, True, 5),
    (ANONYMOUS_IDENTITY, "registry-1.docker.io", "someone/alpine", PULL, False, None),
    (BOB, "registry-1.docker.io", "library", PULL, True, 5),  # "library/**" covers library itself
    (ALICE, "github.com", "", TUNNEL, True, 6),
    (BOB, "github.com", "", TUNNEL, False, None),
    (ALICE, "", "", ADMIN, True, 7),
    (BOB, "", "", ADMIN, False, None),
    (ALICE, "GHCR.IO", "team/public", PULL, True, 2),  # host names compare normalised
]


@pytest.mark.parametrize(("identity", "registry", "repository", "action", "allowed", "rule"), TABLE)
def test_first_matching_rule_decides_and_no_match_denies(
    identity: Identity, registry: str, repository: str, action: Action, allowed: bool, rule: int | None
) -> None:
    decision = evaluate(RULES, AclRequest(identity, registry, repository, action))
    assert decision.allowed is allowed
    assert decision.rule == rule
    assert bool(decision) is allowed


def test_an_empty_acl_denies_everything() -> None:
    decision = evaluate((), AclRequest(ALICE, "ghcr.io", "x", PULL))
    assert not decision.allowed and decision.rule is None and "no access rule" in decision.reason


@pytest.mark.parametrize(
    ("pattern", "repository", "matches"),
    [
        ("**", "a", True),
        ("**", "a/b/c", True),
        ("*", "a", True),
        ("*", "a/b", False),
        ("org/*", "org/app", True),
        ("org/*", "org/app/x", False),
        ("org/**", "org/app/x", True),
        ("org/**", "org", True),
        ("org/**", "organisation/app", False),
        ("**/cache", "a/b/cache", True),
        ("**/cache", "cache", True),
        ("org/*-dev", "org/app-dev", True),
        ("org/*-dev", "org/app-prod", False),
        ("a.b/c", "aXb/c", False),  # the dot is literal
    ],
)
def test_repository_globs(pattern: str, repository: str, matches: bool) -> None:
    assert glob_matches(pattern, repository) is matches


def _policy(enabled: bool, rules: tuple[AclRule, ...]) -> AccessPolicy:
    config = Config(
        registries=default_registries(),
        access=AccessConfig(enabled=enabled, acl=rules, groups=(Group("developers", ("alice",)),)),
    )
    return AccessPolicy.from_config(config)


def test_a_rule_naming_an_alias_applies_to_the_registry() -> None:
    policy = _policy(True, (AclRule("alice", frozenset({PULL}), registry="docker.io"),))
    assert policy.rules[0].registry == "registry-1.docker.io"
    assert policy.decide(ALICE, "registry-1.docker.io", "library/alpine", PULL).allowed


def test_with_access_control_off_everything_is_allowed_and_on_the_rules_decide() -> None:
    rules = (AclRule("alice", frozenset({PULL})),)
    assert _policy(False, rules).decide(BOB, "ghcr.io", "x", PUSH).allowed
    assert not _policy(True, rules).decide(BOB, "ghcr.io", "x", PULL).allowed
    assert _policy(True, rules).decide(ALICE, "ghcr.io", "x", PULL).allowed
