"""Upstream authentication, the pure parts: challenges, scopes, credential choice, realms, tokens.

The upstream client (``upstream/client.py``, its token handshake in ``upstream/tokens.py``) does the I/O;
everything here is plain functions and one small cache so that it can be tested without an event
loop.  Two rules carry the security weight:

* ``choose_credential`` only ever picks a credential configured for this registry (its host, an
  alias, or one of its auth hosts), preferring the longest matching repository prefix.
* ``realm_allows_credentials`` decides whether a token realm named by a challenge may receive that
  credential: only the registry's own names and its configured ``auth_hosts`` qualify, over HTTPS
  (plain HTTP only for a plain-HTTP lab registry).  A challenge naming any other host gets an
  anonymous token request, never our secret.
"""

from __future__ import annotations

import base64
import collections
import datetime
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from appliance.config.model import Credential, RegistryConfig, Scheme, normalize_host, split_host_port

# Spec (distribution token auth): a token without ``expires_in`` lives 60 seconds.
DEFAULT_TOKEN_LIFETIME = 60.0
# Stop using a token this long before it expires, so it does not die on the wire.
EXPIRY_MARGIN = 10.0
TOKEN_CACHE_SIZE = 1024


class ChallengeScheme(StrEnum):
    BEARER = "bearer"
    BASIC = "basic"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge.  ``params`` keys are lower-case."""

    scheme: str  # lower-case auth scheme as sent ("bearer", "basic", or anything else)
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    @property
    def realm(self) -> str | None:
        return self.param("realm")


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'({_TOKEN})[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|{_TOKEN})')
_SCHEME = re.compile(rf"({_TOKEN})(?=[ \t,]|$)")
_TOKEN68 = re.compile(r"([A-Za-z0-9\-._~+/]+=*)[ \t]*(?=,|$)")
_UNESCAPE = re.compile(r"\\(.)")


def parse_www_authenticate(value: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value (RFC 7235) into challenges.

    Handles quoted strings with backslash escapes, commas inside quotes, several challenges in one
    header, and ``token68`` values (kept under the key ``""``).  Junk is skipped, never fatal.
    """
    challenges: list[Challenge] = []
    scheme: str | None = None
    params: list[tuple[str, str]] = []
    pos, n = 0, len(value)
    while pos < n:
        if value[pos] in " \t,":
            pos += 1
            continue
        param = _PARAM.match(value, pos)
        if param is not None:
            if scheme is not None:
                raw = param.group(2)
                if raw.startswith('"'):
                    raw = _UNESCAPE.sub(r"\1", raw[1:-1])
                params.append((param.group(1).lower(), raw))
            pos = param.end()
            continue
        new_scheme = _SCHEME.match(value, pos)
        if new_scheme is None:
            pos += 1
            continue
        if scheme is not None:
            challenges.append(Challenge(scheme, tuple(params)))
        scheme, params = new_scheme.group(1).lower(), []
        pos = new_scheme.end()
        while pos < n and value[pos] in " \t":
            pos += 1
        token68 = _TOKEN68.match(value, pos)
        if token68 is not None and _PARAM.match(value, pos) is None:
            params.append(("", token68.group(1)))
            pos = token68.end()
    if scheme is not None:
        challenges.append(Challenge(scheme, tuple(params)))
    return challenges


def pick_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge the engine can answer: Bearer (with a realm) first, then Basic."""
    found = list(challenges)
    for challenge in found:
        if challenge.scheme == ChallengeScheme.BEARER and challenge.realm:
            return challenge
    for challenge in found:
        if challenge.scheme == ChallengeScheme.BASIC:
            return challenge
    return None


def challenge_from(header_values: Iterable[str]) -> Challenge | None:
    """The answerable challenge among a response's ``WWW-Authenticate`` header values, if any."""
    return pick_challenge(parse_www_authenticate(", ".join(header_values)))


def repository_scope(repository: str, actions: Iterable[str]) -> str:
    """``repository:<name>:<action,action>`` as the token server expects it."""
    return f"repository:{repository}:{','.join(actions)}"


def _host_names(registry: RegistryConfig) -> list[str]:
    """The registry's own names and auth hosts, normalized, own host first."""
    return [normalize_host(name) for name in (*registry.names(), *registry.auth_hosts)]


def _prefix_matches(prefix: str, repository: str) -> bool:
    prefix = prefix.strip("/")
    return repository == prefix or repository.startswith(prefix + "/")


def choose_credential(
    credentials: Iterable[Credential], registry: RegistryConfig, repository: str | None
) -> Credential | None:
    """The credential to use for ``repository`` on ``registry``, or None.

    A credential applies when its scope host is the registry's host, an alias (``docker.io``) or an
    auth host (``auth.docker.io``, as the seed's AUTH_REGISTRIES spells Docker Hub).  A repository-
    prefix credential (``docker.io/orgA``) wins over a host credential when the repository is under
    that prefix; the longest prefix wins.  Among host credentials the registry's own host wins over an
    alias, which wins over an auth host.
    """
    names = _host_names(registry)
    best_prefixed: tuple[int, Credential] | None = None
    best_host: tuple[int, Credential] | None = None
    for credential in credentials:
        host = normalize_host(credential.host)
        if host not in names:
            continue
        rank = names.index(host)
        prefix = credential.repository_prefix
        if prefix is not None:
            if repository is None or not _prefix_matches(prefix, repository):
                continue
            length = len(prefix.strip("/"))
            if best_prefixed is None or length > best_prefixed[0]:
                best_prefixed = (length, credential)
        elif best_host is None or rank < best_host[0]:
            best_host = (rank, credential)
    if best_prefixed is not None:
        return best_prefixed[1]
    return best_host[1] if best_host is not None else None


def serves_a_registry(credential: Credential, registries: Iterable[RegistryConfig]) -> bool:
    """Whether ``credential`` is keyed by a configured registry's name or auth host.

    Otherwise its host is taken for a separate token server's (see ``realm_credential``): the
    credential is only used for token requests to that host.
    """
    host = normalize_host(credential.host)
    return any(host in _host_names(registry) for registry in registries)


def repository_accounts_answer_ping(
    credentials: Iterable[Credential], registry: RegistryConfig, challenge: Challenge | None
) -> bool:
    """Whether a Basic challenge to the ``/v2/`` ping is for the engine to answer, not the client.

    True when the registry asks for Basic and the engine holds only repository-prefix accounts for
    it: the ping names no repository, so none of them applies (and none is sent for a path outside
    its prefix), yet every request that does name one is answered with its own account.  Passing the
    challenge on would make clients answer it themselves (containers/image with an empty account,
    which then replaces ours on every request), so the ping is answered as the registry would for a
    valid account.  A registry-level credential answers the ping itself; tokens need no such rule,
    since an anonymous token answers the ping.
    """
    if challenge is None or challenge.scheme != ChallengeScheme.BASIC:
        return False
    found = list(credentials)
    if choose_credential(found, registry, None) is not None:
        return False
    names = _host_names(registry)
    return any(c.repository_prefix is not None and normalize_host(c.host) in names for c in found)


def realm_allows_credentials(realm: str, registry: RegistryConfig) -> bool:
    """Whether a token realm URL may receive this registry's credentials.

    Allowed: the registry's own host or an alias, or one of its configured ``auth_hosts``, on the
    port given there (else the default port), over HTTPS; over plain HTTP only for a plain-HTTP (lab)
    registry.  Everything else, whatever the challenge says, gets no credentials.  Sharing a
    "registrable domain" is not enough on its own: without the public suffix list, ``a.github.io``
    and ``b.github.io`` would look related, so the allowlist is explicit.
    """
    origin = _realm_origin(realm, registry)
    if origin is None:
        return False
    hostname, port, default_port = origin
    for name in (*registry.names(), *registry.auth_hosts):
        allowed_host, allowed_port = split_host_port(normalize_host(name))
        # A name without a port means the scheme's default port, not any port on that host.
        if allowed_host == hostname and (allowed_port or default_port) == port:
            return True
    return False


def _realm_origin(realm: str, registry: RegistryConfig) -> tuple[str, int, int] | None:
    """(host, port, the scheme's default port) of a realm URL that may receive credentials at all.

    HTTPS, or plain HTTP for a plain-HTTP (lab) registry only: a secret never crosses the network
    in clear text for a registry that is itself reached over TLS.  None for anything else.
    """
    try:
        parts = urlsplit(realm)
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not hostname:
        return None
    if parts.scheme == "http":
        if registry.scheme is not Scheme.HTTP:
            return None
    elif parts.scheme != "https":
        return None
    default_port = 443 if parts.scheme == "https" else 80
    return hostname.lower().rstrip("."), port or default_port, default_port


def realm_credential(
    credentials: Iterable[Credential], realm: str, registry: RegistryConfig, repository: str | None
) -> Credential | None:
    """A credential keyed by the token server's own host, for a token request to that host.

    The seed's form for a registry with a separate auth server: AUTH_REGISTRIES names the auth
    server (``gitlab.example`` for ``registry.gitlab.example``, ``auth.docker.io`` for Docker Hub),
    not the registry.  The secret still only goes to the host it is configured for - the realm's
    host and port must be the credential's, over HTTPS (plain HTTP only for a plain-HTTP registry) -
    so whichever configured registry's challenge names that realm, nothing leaves for elsewhere.
    A repository-prefix credential on the token host (``gitlab.example/team``) wins for
    repositories under it, as everywhere else.
    """
    origin = _realm_origin(realm, registry)
    if origin is None:
        return None
    hostname, port, default_port = origin
    shown = f"[{hostname}]" if ":" in hostname else hostname
    name = shown if port == default_port else f"{shown}:{port}"
    return choose_credential(credentials, RegistryConfig(host=name), repository)


def scope_repository(scope: str | None) -> str | None:
    """The repository a ``repository:<name>:<actions>`` scope names, else None."""
    parts = (scope or "").split(":")
    if len(parts) >= 3 and parts[0] == "repository" and parts[1]:
        return ":".join(parts[1:-1])
    return None


def realm_host(realm: str) -> str:
    """The host part of a realm URL, for log lines (never the query, which may carry anything)."""
    try:
        return urlsplit(realm).netloc.rpartition("@")[2] or "?"
    except ValueError:
        return "?"


def basic_authorization(credential: Credential) -> str:
    raw = f"{credential.username}:{credential.password.reveal()}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and the wall-clock time it stops being usable."""

    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(value='********', expires_at={self.expires_at!r})"

    def usable(self, now: float) -> bool:
        return now < self.expires_at


class TokenError(ValueError):
    """A token endpoint's answer could not be used."""


def _parse_issued_at(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def parse_token_response(body: bytes, now: float) -> Token:
    """A token server's JSON (``token`` or ``access_token``, ``expires_in``, ``issued_at``) -> Token.

    The expiry is counted from when we received it, shortened by the time the server says already
    passed since ``issued_at`` (when that is plausible), and by a safety margin.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenError("token response is not JSON") from exc
    if not isinstance(data, dict):
        raise TokenError("token response is not a JSON object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise TokenError("token response has no token")
    lifetime = data.get("expires_in")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    lifetime = float(lifetime)
    issued_at = _parse_issued_at(data.get("issued_at"))
    if issued_at is not None and 0 < now - issued_at < lifetime:
        lifetime -= now - issued_at
    margin = min(EXPIRY_MARGIN, lifetime / 4)
    return Token(value, now + lifetime - margin)


# Cache key: (registry host, credential identity or None for anonymous, scope).
TokenKey = tuple[str, tuple[str, str] | None, str]


def credential_identity(credential: Credential | None) -> tuple[str, str] | None:
    """What tells credentials apart in the token cache, without the secret."""
    return None if credential is None else (credential.scope, credential.username)


class TokenCache:
    """Bearer tokens per (registry, credential identity, scope), bounded, least recently used out."""

    def __init__(self, max_entries: int = TOKEN_CACHE_SIZE) -> None:
        self._max = max_entries
        self._tokens: collections.OrderedDict[TokenKey, Token] = collections.OrderedDict()

    def get(self, key: TokenKey, now: float) -> Token | None:
        token = self._tokens.get(key)
        if token is None:
            return None
        if not token.usable(now):
            del self._tokens[key]
            return None
        self._tokens.move_to_end(key)
        return token

    def put(self, key: TokenKey, token: Token) -> None:
        self._tokens[key] = token
        self._tokens.move_to_end(key)
        while len(self._tokens) > self._max:
            self._tokens.popitem(last=False)

    def discard(self, key: TokenKey) -> None:
        self._tokens.pop(key, None)

    def clear(self) -> None:
        self._tokens.clear()

    def __len__(self) -> int:
        return len(self._tokens)
