"""The directory: users, tokens and CIDR mappings -> identities with their groups."""

from __future__ import annotations

import ipaddress

from appliance.access.identities import Directory, IdentityKind
from appliance.config.access import AccessConfig, ClientMapping, Group, RobotToken, User

ACCESS = AccessConfig(
    users=(User("alice", "$scrypt$x"),),
    groups=(Group("developers", ("alice", "ci")), Group("nodes", ("k8s-pool",))),
    tokens=(
        RobotToken("ci", "abcd1234", "sha256:" + "1" * 64),
        RobotToken("alice", "alic1234", "sha256:" + "2" * 64),
    ),
    clients=(
        ClientMapping(ipaddress.ip_network("10.42.0.0/16"), "k8s-pool"),
        ClientMapping(ipaddress.ip_network("10.42.7.0/24"), "gpu-pool"),
    ),
)


def test_a_user_carries_its_groups() -> None:
    directory = Directory(ACCESS)
    user = directory.user("alice")
    assert user is not None
    identity = directory.for_user(user)
    assert (identity.name, identity.kind, identity.groups, identity.via) == (
        "alice",
        IdentityKind.USER,
        frozenset({"developers"}),
        "basic",
    )


def test_a_token_acts_as_a_robot_or_as_the_user_it_names() -> None:
    directory = Directory(ACCESS)
    robot = directory.token("abcd1234")
    personal = directory.token("alic1234")
    assert robot is not None and personal is not None
    assert directory.for_token(robot).kind is IdentityKind.ROBOT
    assert directory.for_token(robot).groups == frozenset({"developers"})
    assert directory.for_token(personal).kind is IdentityKind.USER
    assert directory.for_token(personal).via == "token:alic1234"


def test_the_longest_cidr_mapping_wins() -> None:
    directory = Directory(ACCESS)
    pool = directory.for_address("10.42.1.1")
    gpu = directory.for_address("::ffff:10.42.7.9")
    assert pool is not None and pool.name == "k8s-pool" and pool.groups == frozenset({"nodes"})
    assert gpu is not None and gpu.name == "gpu-pool" and gpu.kind is IdentityKind.NETWORK
    assert directory.for_address("10.43.0.1") is None
    assert directory.for_address("-") is None


def test_records_never_show_their_hashes() -> None:
    assert "scrypt" not in repr(ACCESS.users[0])
    assert "sha256" not in repr(ACCESS.tokens[0])
