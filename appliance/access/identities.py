"""Identities: who a request is on behalf of, and the directory that turns names into them.

An identity is a user (name and password), a robot (a token's name that is no user's), a network
identity (every connection from a configured CIDR block, ``access.clients``) or the anonymous client.
Its groups come from ``access.groups``.  Nothing here holds a secret: an ``Identity`` may be logged,
put in events and shown on the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from appliance.access.network import parse_address
from appliance.config.access import ANONYMOUS, AccessConfig, RobotToken, User


class IdentityKind(StrEnum):
    USER = "user"
    ROBOT = "robot"
    NETWORK = "network"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    kind: IdentityKind
    groups: frozenset[str] = frozenset()
    # How it was established, for audit: "basic", "token:<id>", "cidr:10.0.0.0/8" (never a secret).
    via: str = ""

    def __str__(self) -> str:
        return self.name


ANONYMOUS_IDENTITY = Identity(ANONYMOUS, IdentityKind.ANONYMOUS, via="none")


class Directory:
    """The ``[access]`` configuration indexed for lookups; rebuilt whole when it changes."""

    def __init__(self, access: AccessConfig) -> None:
        self.access = access
        self._users = {user.name: user for user in access.users}
        self._tokens = {token.token_id: token for token in access.tokens}
        self._groups: dict[str, set[str]] = {}
        for group in access.groups:
            for member in group.members:
                self._groups.setdefault(member, set()).add(group.name)
        # Longest prefix first, so a /24 carved out of a /16 wins over it.
        self._clients = sorted(access.clients, key=lambda c: c.network.prefixlen, reverse=True)

    def user(self, name: str) -> User | None:
        return self._users.get(name)

    def token(self, token_id: str) -> RobotToken | None:
        return self._tokens.get(token_id)

    def identity(self, name: str, kind: IdentityKind, via: str) -> Identity:
        return Identity(name, kind, frozenset(self._groups.get(name, ())), via)

    def for_user(self, user: User) -> Identity:
        return self.identity(user.name, IdentityKind.USER, "basic")

    def for_token(self, token: RobotToken) -> Identity:
        kind = IdentityKind.USER if token.name in self._users else IdentityKind.ROBOT
        return self.identity(token.name, kind, f"token:{token.token_id}")

    def for_address(self, source: str) -> Identity | None:
        """The network identity of a client address (``access.clients``), if one is mapped."""
        address = parse_address(source)
        if address is None:
            return None
        for mapping in self._clients:
            if mapping.network.version == address.version and address in mapping.network:
                return self.identity(mapping.identity, IdentityKind.NETWORK, f"cidr:{mapping.network}")
        return None


def identity_named(directory: Directory, name: str) -> Identity:
    """The identity a name stands for, as ``acl check`` asks about it (no credentials involved)."""
    if name == ANONYMOUS:
        return ANONYMOUS_IDENTITY
    if directory.user(name) is not None:
        return directory.identity(name, IdentityKind.USER, "name")
    if any(token.name == name for token in directory.access.tokens):
        return directory.identity(name, IdentityKind.ROBOT, "name")
    if any(client.identity == name for client in directory.access.clients):
        return directory.identity(name, IdentityKind.NETWORK, "name")
    return directory.identity(name, IdentityKind.USER, "unknown")
