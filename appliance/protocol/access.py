"""Access control over the socket: the view of users, groups, tokens and rules, the edits, a check.

No record here carries a password or a token secret, in either direction: the CLI hashes a password
and makes a token before it calls, so the engine receives ``$scrypt$...`` and ``sha256:...`` only,
and answers with names, ids and dates.  The views carry no hashes at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.protocol.codec import Payload


@dataclass(frozen=True, slots=True)
class UserView(Payload):
    name: str
    source: str  # "config" (a hash in the file) or the password_file / htpasswd_file path
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupView(Payload):
    name: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenView(Payload):
    name: str
    id: str
    created: float | None = None  # epoch seconds
    expires: float | None = None  # None: never
    last_used: float | None = None  # since the engine started; None: not used (or offline)
    expired: bool = False


@dataclass(frozen=True, slots=True)
class ClientView(Payload):
    cidr: str
    identity: str


@dataclass(frozen=True, slots=True)
class RuleView(Payload):
    index: int
    who: str
    actions: tuple[str, ...]
    registry: str = "*"
    repository: str = "**"
    effect: str = "allow"


@dataclass(frozen=True, slots=True)
class AccessView(Payload):
    enabled: bool
    allow_clients: tuple[str, ...]  # the networks the floor lets in now
    users: tuple[UserView, ...] = ()
    groups: tuple[GroupView, ...] = ()
    tokens: tuple[TokenView, ...] = ()
    clients: tuple[ClientView, ...] = ()
    acl: tuple[RuleView, ...] = ()


@dataclass(frozen=True, slots=True)
class UserEdit(Payload):
    """``POST access/users`` adds (``groups`` joined, created if new); ``PATCH .../{name}`` sets the
    password hash."""

    name: str
    password_hash: str
    groups: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"UserEdit(name={self.name!r}, groups={self.groups!r})"


@dataclass(frozen=True, slots=True)
class TokenEdit(Payload):
    name: str
    id: str
    hash: str
    created: float
    expires: float | None = None

    def __repr__(self) -> str:
        return f"TokenEdit(name={self.name!r}, id={self.id!r})"


@dataclass(frozen=True, slots=True)
class RuleEdit(Payload):
    who: str
    actions: tuple[str, ...]
    registry: str = "*"
    repository: str = "**"
    effect: str = "allow"
    position: int | None = None  # insert before this rule; None: append


@dataclass(frozen=True, slots=True)
class RuleMove(Payload):
    """``PATCH access/acl/{index}``: the rule at ``index`` moves to ``position`` (its index afterwards)."""

    position: int


@dataclass(frozen=True, slots=True)
class AccessCheck(Payload):
    """Would ``identity`` be allowed ``action`` on ``registry``/``repository``?  (``acl check``)"""

    identity: str
    registry: str
    repository: str
    action: str


@dataclass(frozen=True, slots=True)
class AccessDecision(Payload):
    allowed: bool
    reason: str
    rule: int | None = None
    groups: tuple[str, ...] = ()  # the identity's groups, as the decision saw them
