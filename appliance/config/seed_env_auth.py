"""The seed's AUTH_REGISTRIES value <-> credentials, choosing on the way out delimiters no secret holds.

AUTH_REGISTRIES entries are split on AUTH_REGISTRIES_DELIMITER (D1; the default single space splits on
runs of whitespace, as the seed's shell did).  Within an entry, host and user are split off the front
on AUTH_REGISTRY_DELIMITER (D2) and the rest, delimiters included, is the password.  With a custom D1,
leading whitespace before a host is dropped, whitespace-only entries are skipped and one final newline
of the whole value is dropped (YAML block scalars add one); everything else in a password is kept.

``host:port`` with the default ``:`` D2: ``myreg:5000:user:pass`` is read as host ``myreg:5000`` when
the entry has at least four fields, the second is all digits, and either ``myreg:5000`` is a configured
registry or ``myreg`` alone is not.  Otherwise the second field is the user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from appliance.config.model import (
    DOCKER_HUB_AUTH_HOST,
    Credential,
    RegistryConfig,
    Secret,
    SecretStore,
    normalize_host,
)
from appliance.config.values import parse_scope
from appliance.errors import ConfigError

# The seed image's sample value: it means "no credentials".
SEED_DUMMY_AUTH = "some.authenticated.registry:oneuser:onepassword another.registry:user:password"
DEFAULT_ENTRIES_DELIMITER = " "
DEFAULT_ENTRY_DELIMITER = ":"


def registry_hosts(registries: Iterable[RegistryConfig]) -> frozenset[str]:
    """Every registry name and auth host (and Docker Hub's), for the ``host:port`` rule."""
    names = {DOCKER_HUB_AUTH_HOST}
    for registry in registries:
        names.update(normalize_host(name) for name in (*registry.names(), *registry.auth_hosts))
    return frozenset(names)


def revealed(credentials: Iterable[Credential]) -> list[tuple[str, str, str]]:
    """(scope, username, password) of each credential, for comparing two lists of them."""
    return [(c.scope, c.username, c.password.reveal()) for c in credentials]


_PORT_FIELD_RE = re.compile(r"\d{1,5}(/.*)?", re.DOTALL)


def _entries(value: str, entries_delimiter: str) -> Iterator[str]:
    if not entries_delimiter.strip():
        yield from value.split()
        return
    value = value.removesuffix("\n").removesuffix("\r")
    for entry in value.split(entries_delimiter):
        entry = entry.lstrip()
        if entry:
            yield entry


def _split_entry(entry: str, delimiter: str, known: frozenset[str]) -> list[str]:
    if delimiter == ":":
        parts = entry.split(":")
        if len(parts) >= 4 and _PORT_FIELD_RE.fullmatch(parts[1]):
            with_port = normalize_host(f"{parts[0]}:{parts[1]}".split("/", 1)[0])
            if with_port in known or normalize_host(parts[0]) not in known:
                return [f"{parts[0]}:{parts[1]}", parts[2], ":".join(parts[3:])]
    return entry.split(delimiter, 2)


def parse_auth_registries(
    value: str,
    entries_delimiter: str = DEFAULT_ENTRIES_DELIMITER,
    entry_delimiter: str = DEFAULT_ENTRY_DELIMITER,
    known_hosts: frozenset[str] = frozenset(),
) -> tuple[tuple[Credential, ...], list[str]]:
    """AUTH_REGISTRIES -> credentials (``store=SEED_ENV``).  Errors name the entry, never its secret."""
    if not entry_delimiter:
        raise ConfigError("AUTH_REGISTRY_DELIMITER", "must not be empty")
    if value.strip() == SEED_DUMMY_AUTH:
        return (), []
    warnings: list[str] = []
    credentials: dict[str, Credential] = {}
    for number, entry in enumerate(_entries(value, entries_delimiter), start=1):
        where = f"AUTH_REGISTRIES entry {number}"
        parts = _split_entry(entry, entry_delimiter, known_hosts)
        host_text = parts[0]
        # Only a plausible host is echoed back: with wrong delimiters the "host" may be a secret.
        shown = host_text if re.fullmatch(r"[\w.:/\[\]*-]{1,253}", host_text) else "?"
        if len(parts) < 3:
            raise ConfigError(
                where,
                f"(host {shown!r}) expected host{entry_delimiter}user{entry_delimiter}password; "
                f"check AUTH_REGISTRIES_DELIMITER ({entries_delimiter!r}) and AUTH_REGISTRY_DELIMITER "
                f"({entry_delimiter!r})",
            )
        if not host_text.strip():
            raise ConfigError(where, "empty host")
        try:
            scope = parse_scope(host_text, where)
        except ConfigError:
            raise ConfigError(where, f"invalid host {shown!r}") from None
        username, password = parts[1], parts[2]
        if not username:
            raise ConfigError(where, f"(host {scope!r}) empty user name")
        if not password:
            raise ConfigError(where, f"(host {scope!r}) empty password")
        if scope in credentials:
            warnings.append(f"{where}: duplicate credential for {scope!r}; the later one wins")
        credentials[scope] = Credential(scope, username, Secret(password), SecretStore.SEED_ENV)
    return tuple(credentials.values()), warnings


# Seed-README delimiters first, then fallbacks for secrets that contain those too.
_DELIMITER_CANDIDATES: tuple[tuple[str, str], ...] = (
    (DEFAULT_ENTRIES_DELIMITER, DEFAULT_ENTRY_DELIMITER),
    (";;;", ":::"),
    ("|||", "%%%"),
    (";;;;;", ":::::"),
    ("\u241e\u241e", "\u241f\u241f"),
)


def encode_auth_registries(
    credentials: Iterable[Credential], known_hosts: frozenset[str] = frozenset()
) -> tuple[str, str, str]:
    """Credentials -> (AUTH_REGISTRIES, AUTH_REGISTRIES_DELIMITER, AUTH_REGISTRY_DELIMITER).

    Picks the first delimiter pair whose encoding parses back to exactly these credentials.
    """
    creds = list(credentials)
    wanted = revealed(creds)
    if not creds:
        return "", DEFAULT_ENTRIES_DELIMITER, DEFAULT_ENTRY_DELIMITER
    candidates = list(_DELIMITER_CANDIDATES)
    candidates.extend((f"<;{n};>", f"<:{n}:>") for n in range(64))
    for entries_delimiter, entry_delimiter in candidates:
        value = entries_delimiter.join(
            f"{c.scope}{entry_delimiter}{c.username}{entry_delimiter}{c.password.reveal()}" for c in creds
        )
        for attempt in (value, value + entries_delimiter):
            try:
                parsed, _ = parse_auth_registries(attempt, entries_delimiter, entry_delimiter, known_hosts)
            except ConfigError:
                continue
            if revealed(parsed) == wanted and attempt.strip() != SEED_DUMMY_AUTH:
                return attempt, entries_delimiter, entry_delimiter
    raise ConfigError("AUTH_REGISTRIES", "cannot find delimiters that no credential contains")
