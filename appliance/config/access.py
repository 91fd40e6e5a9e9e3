"""The ``[access]`` configuration as immutable records: users, groups, robot tokens, source-CIDR
identities and ACL rules (the decisions made from them live in ``appliance.access``).

Only hashes are held here, never a password or a token secret; the hash fields are left out of
``repr`` all the same, so a record printed in a log or a traceback shows names only.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from appliance.errors import ConfigError
from appliance.protocol.access_input import ANONYMOUS as ANONYMOUS
from appliance.protocol.access_input import ANYONE as ANYONE
from appliance.protocol.access_input import NAME as NAME

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names (NAME), ANYONE ("*") and ANONYMOUS are the protocol's: the CLI and the dashboard check with them.
DEFAULT_VERDICT_TTL = 60.0
# The stored forms (``access.passwords`` and ``access.tokens`` make and check them).
SCRYPT_HASH = re.compile(r"\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{22,}")
BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
TOKEN_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TOKEN_ID = re.compile(r"[a-z0-9]{8}")
MAX_SCRYPT_LOG_N = 20  # 1 GiB per check: anything above is a typo or an attack on our memory


class Action(StrEnum):
    """What a client asks to do, as ACL rules name it."""

    PULL = "pull"  # read manifests, blobs, tags
    PUSH = "push"  # write (uploads, manifest PUT, DELETE), where pushes are allowed at all
    TUNNEL = "tunnel"  # CONNECT to a host the appliance does not intercept
    ADMIN = "admin"  # the appliance's own management (users, tokens, rules, cache)


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class User:
    """A person (or a program) logging in with a name and password."""

    name: str
    password_hash: str = field(repr=False)  # $scrypt$... or bcrypt $2y$...
    password_file: Path | None = None  # where the hash was read from (None: inline in the TOML)


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    members: tuple[str, ...]  # identity names: users, token names, client identities


@dataclass(frozen=True, slots=True)
class RobotToken:
    """A robot token's record: the secret itself is shown once at creation and never stored."""

    name: str  # the identity the token acts as (a user's name, or a robot's)
    token_id: str  # the public part of ``rat_<id>_<secret>``
    digest: str = field(repr=False)  # sha256:<hex> of the whole token
    created: float | None = None  # epoch seconds
    expires: float | None = None  # epoch seconds; None: never

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


@dataclass(frozen=True, slots=True)
class ClientMapping:
    """Every connection from ``network`` is ``identity`` (a CI runner pool, a Kubernetes node pool)."""

    network: Network
    identity: str


@dataclass(frozen=True, slots=True)
class AclRule:
    """One ordered rule: the first whose ``who``, ``registry``, ``repository`` and action match decides.

    ``who``: an identity name, ``@group``, or ``*`` (anyone, the anonymous client included).
    ``registry``: a registry host (an alias is read as the registry it names) or ``*``.
    ``repository``: a glob where ``*`` stays within one path segment and ``**`` spans any number.
    """

    who: str
    actions: frozenset[Action]
    registry: str = ANYONE
    repository: str = "**"
    effect: Effect = Effect.ALLOW


UNLIMITED = math.inf  # a per-identity limit that lifts the default ("unlimited" in the TOML)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Request and byte rates one identity may use; None: not set here (no limit, or the default's)."""

    requests_per_minute: float | None = None
    bytes_per_second: float | None = None

    def over(self, default: RateLimit) -> RateLimit:
        """This limit with what it leaves unset taken from ``default``."""
        return RateLimit(
            self.requests_per_minute if self.requests_per_minute is not None else default.requests_per_minute,
            self.bytes_per_second if self.bytes_per_second is not None else default.bytes_per_second,
        )


@dataclass(frozen=True, slots=True)
class IdentityLimit:
    """``[[access.limits]]``: the limits of one identity or ``@group`` (first match wins)."""

    who: str
    limit: RateLimit


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """Client access control.  Off (``enabled`` false) the appliance serves every client the network
    floor lets in, as the seed did; on, every request needs an identity and a rule allowing it, and a
    request no rule matches is denied."""

    enabled: bool = False
    users: tuple[User, ...] = ()
    groups: tuple[Group, ...] = ()
    tokens: tuple[RobotToken, ...] = ()
    clients: tuple[ClientMapping, ...] = ()
    acl: tuple[AclRule, ...] = ()
    verdict_ttl: float = DEFAULT_VERDICT_TTL  # seconds a checked Authorization header is remembered
    # Per-identity rate limits: the default for every identity, and entries for some (issue 17.7).
    limit: RateLimit = field(default_factory=RateLimit)
    limits: tuple[IdentityLimit, ...] = ()

    def user(self, name: str) -> User | None:
        return next((user for user in self.users if user.name == name), None)

    def token(self, token_id: str) -> RobotToken | None:
        return next((token for token in self.tokens if token.token_id == token_id), None)

    def groups_of(self, name: str) -> frozenset[str]:
        return frozenset(group.name for group in self.groups if name in group.members)

    def credentials_key(self) -> tuple[object, ...]:
        """What a cached verdict depends on: when this changes, every cached verdict goes."""
        return (self.users, self.tokens, self.groups, self.enabled)


def check_password_hash(text: str, where: str) -> str:
    """``text`` if it is a hash the appliance can verify, else a ConfigError naming ``where`` only."""
    scrypt = SCRYPT_HASH.fullmatch(text)
    if scrypt:
        log_n, r, p = (int(group) for group in scrypt.groups())
        if not (1 <= log_n <= MAX_SCRYPT_LOG_N and 1 <= r <= 32 and 1 <= p <= 16):
            raise ConfigError(where, "$scrypt$ hash parameters out of range (ln 1-20, r 1-32, p 1-16)")
        return text
    if BCRYPT_HASH.fullmatch(text):
        return text
    if text.startswith(("$scrypt$", "$2")):
        raise ConfigError(where, "malformed password hash")
    raise ConfigError(
        where,
        "not a password hash: expected $scrypt$... (appliance user add) or bcrypt $2y$... (htpasswd -B)",
    )


def check_token_digest(text: str, where: str) -> str:
    if not TOKEN_DIGEST.fullmatch(text):
        raise ConfigError(where, "expected sha256:<64 hex digits> (appliance token create writes it)")
    return text


def check_token_id(text: str, where: str) -> str:
    if not TOKEN_ID.fullmatch(text):
        raise ConfigError(where, "expected 8 lower-case letters or digits")
    return text
