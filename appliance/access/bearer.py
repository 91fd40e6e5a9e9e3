"""Short-lived bearer tokens the appliance issues at ``/auth/token`` for clients that log in to it.

``docker login``, ``skopeo login`` and containerd follow a ``WWW-Authenticate: Bearer realm=...``
challenge: they send their credentials once to the realm and then present the token it returned on
every request.  Here the realm is the appliance itself, so a password check (slow by design) happens
once per login and token refresh, not per request.

A token reads ``apt.<payload>.<signature>``: the payload (base64url JSON) names the identity, how it
was established, the repositories and actions it was asked for and when it expires; the signature is
an HMAC-SHA256 with a key made when the process starts and held only in memory.  So a restart (or
another replica) turns every token away and clients simply fetch a new one from the challenge; no
key is ever written anywhere.  The identity is looked up again in the current directory at every
use: a user removed (or a robot token revoked) loses access at once, not when the token expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from appliance.access.identities import Directory, Identity, IdentityKind

PREFIX = "apt."
DEFAULT_LIFETIME = 300.0  # seconds, like Docker Hub's tokens
MAX_TOKEN = 8192
MAX_SCOPES = 32


@dataclass(frozen=True, slots=True)
class Scope:
    """``repository:NAME:pull,push`` as the client asked for it."""

    repository: str
    actions: frozenset[str]

    def text(self) -> str:
        return f"repository:{self.repository}:{','.join(sorted(self.actions))}"


def parse_scopes(values: Iterable[str]) -> tuple[Scope, ...]:
    """The ``repository`` scopes among ``scope`` query values (others, like ``registry:catalog``,
    are dropped: the appliance grants nothing beyond repositories)."""
    scopes: list[Scope] = []
    for value in values:
        for item in value.split(" "):
            kind, _, rest = item.partition(":")
            name, sep, actions = rest.rpartition(":")
            if kind != "repository" or not sep or not name:
                continue
            wanted = frozenset(a for a in actions.split(",") if a in ("pull", "push", "*"))
            if wanted:
                scopes.append(Scope(name, wanted))
    return tuple(scopes[:MAX_SCOPES])


@dataclass(frozen=True, slots=True)
class Granted:
    """A verified token: who, and for which repositories."""

    identity: Identity
    scopes: tuple[Scope, ...]
    expires: float

    def covers(self, repository: str | None) -> bool:
        """True for a request naming no repository (``/v2/``) or one the token was issued for."""
        if repository is None:
            return True
        return any(scope.repository == repository for scope in self.scopes)


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires_in: int
    issued_at: float

    def __repr__(self) -> str:
        return f"Issued(token='********', expires_in={self.expires_in})"


class BearerTokens:
    """Issues and verifies the appliance's own bearer tokens (one in-memory key per process)."""

    def __init__(self, *, lifetime: float = DEFAULT_LIFETIME, clock: Callable[[], float] = time.time) -> None:
        self._key = secrets.token_bytes(32)
        self.lifetime = lifetime
        self._clock = clock

    def issue(self, identity: Identity, scopes: tuple[Scope, ...], service: str) -> Issued:
        now = self._clock()
        payload = {
            "sub": identity.name,
            "kind": str(identity.kind),
            "via": identity.via,
            "svc": service,
            "scp": [[scope.repository, sorted(scope.actions)] for scope in scopes],
            "iat": int(now),
            "exp": int(now + self.lifetime),
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        token = PREFIX + body + "." + _b64(self._sign(body))
        return Issued(token, int(self.lifetime), now)

    def verify(self, token: str, directory: Directory) -> Granted | None:
        """The grant a token carries if it is ours, unexpired and its identity still exists."""
        if not token.startswith(PREFIX) or len(token) > MAX_TOKEN:
            return None
        body, sep, signature = token.removeprefix(PREFIX).partition(".")
        if not sep:
            return None
        try:
            good = hmac.compare_digest(_unb64(signature), self._sign(body))
            payload = json.loads(_unb64(body)) if good else None
        except (binascii.Error, ValueError):
            return None
        if not isinstance(payload, dict):
            return None
        try:
            expires = float(payload["exp"])
            identity = _current_identity(
                directory, str(payload["sub"]), str(payload["kind"]), str(payload["via"])
            )
            scopes = tuple(Scope(str(name), frozenset(map(str, actions))) for name, actions in payload["scp"])
        except (KeyError, TypeError, ValueError):
            return None
        if expires <= self._clock() or identity is None:
            return None
        return Granted(identity, scopes, expires)

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()


def looks_like_ours(token: str) -> bool:
    return token.startswith(PREFIX)


def _current_identity(directory: Directory, name: str, kind: str, via: str) -> Identity | None:
    """The identity as the directory knows it now, or None when it is gone."""
    identity_kind = IdentityKind(kind)
    if via.startswith("token:"):
        token = directory.token(via.removeprefix("token:"))
        if token is None or token.expired(time.time()):
            return None
        return directory.for_token(token)
    if via == "basic" and directory.user(name) is None:
        return None
    return directory.identity(name, identity_kind, via)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
