"""The appliance's own bearer tokens: signed, short-lived, scoped, and only as good as the identity."""

from __future__ import annotations

from appliance.access import tokens
from appliance.access.bearer import BearerTokens, Scope, parse_scopes
from appliance.access.identities import Directory, IdentityKind
from appliance.config.access import AccessConfig, Group, RobotToken, User

HASH = "$scrypt$ln=4,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def directory(**changes: object) -> Directory:
    base = AccessConfig(enabled=True, users=(User("alice", HASH),), groups=(Group("devs", ("alice",)),))
    values = {"users": base.users, "groups": base.groups, "tokens": base.tokens}
    values.update(changes)
    return Directory(AccessConfig(enabled=True, **values))  # type: ignore[arg-type]


def test_scopes_keep_repositories_and_their_pull_or_push_actions_only() -> None:
    scopes = parse_scopes(["repository:team/app:pull,push", "registry:catalog:*", "repository:x:delete"])
    assert scopes == (Scope("team/app", frozenset({"pull", "push"})),)
    assert parse_scopes(["repository:a:pull repository:host_5000/b/c:pull"]) == (
        Scope("a", frozenset({"pull"})),
        Scope("host_5000/b/c", frozenset({"pull"})),
    )


def test_a_token_names_its_identity_with_current_groups_and_covers_only_its_repositories() -> None:
    clock = Clock()
    issuer = BearerTokens(clock=clock)
    users = directory()
    alice = users.for_user(users.user("alice"))  # type: ignore[arg-type]
    issued = issuer.issue(alice, parse_scopes(["repository:team/app:pull"]), "svc")
    assert "********" in repr(issued) and issued.token not in repr(issued)
    granted = issuer.verify(issued.token, users)
    assert granted is not None
    assert granted.identity.name == "alice" and granted.identity.groups == frozenset({"devs"})
    assert granted.covers("team/app") and granted.covers(None)
    assert not granted.covers("team/other")


def test_an_expired_forged_or_foreign_token_is_refused() -> None:
    clock = Clock()
    issuer = BearerTokens(clock=clock, lifetime=300)
    users = directory()
    alice = users.for_user(users.user("alice"))  # type: ignore[arg-type]
    token = issuer.issue(alice, (), "svc").token
    assert BearerTokens(clock=clock).verify(token, users) is None  # another process's key
    body, _, signature = token.partition(".")[2].partition(".")
    assert issuer.verify(f"apt.{body}.{signature[:-2]}AA", users) is None
    assert issuer.verify("apt.not-base64!.x", users) is None
    clock.now += 301
    assert issuer.verify(token, users) is None


def test_a_token_dies_with_its_user_or_its_robot_token() -> None:
    clock = Clock()
    issuer = BearerTokens(clock=clock)
    robot = tokens.new_token()
    users = directory(tokens=(RobotToken("ci", robot.token_id, robot.digest),))
    alice = users.for_user(users.user("alice"))  # type: ignore[arg-type]
    ci = users.for_token(users.token(robot.token_id))  # type: ignore[arg-type]
    assert ci.kind is IdentityKind.ROBOT
    alice_token, ci_token = issuer.issue(alice, (), "s").token, issuer.issue(ci, (), "s").token
    after = directory(users=(), tokens=())
    assert issuer.verify(alice_token, after) is None
    assert issuer.verify(ci_token, after) is None
    assert issuer.verify(ci_token, users) is not None
