"""Reading ``allow_clients`` and the ``[access]`` table of the TOML file into ``AccessConfig``.

Part of the ``config_file*`` modules; ``toml_read`` calls ``access_changes`` once.  Every error names
the file and the dotted key (``access.users[2].password_hash``), never a hash or a secret.  Password
hashes can live in the file, in a ``password_file`` per user (a bare hash, or an htpasswd file whose
line for that user is used), or in an htpasswd file for many users (``access.htpasswd_file``).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from appliance.config.access import (
    ANYONE,
    UNLIMITED,
    AccessConfig,
    AclRule,
    Action,
    ClientMapping,
    Effect,
    Group,
    IdentityLimit,
    Network,
    RateLimit,
    RobotToken,
    User,
    check_password_hash,
    check_token_digest,
    check_token_id,
)
from appliance.config.toml_keys import TableReader
from appliance.config.units import format_size, parse_size, parse_time
from appliance.config.values import parse_host
from appliance.errors import ConfigError
from appliance.protocol import access_input as shared
from appliance.protocol.access_input import AccessInputError

ACCESS_KEYS = (
    "enabled",
    "verdict_ttl",
    "htpasswd_file",
    "users",
    "groups",
    "tokens",
    "clients",
    "acl",
    "requests_per_minute",
    "bytes_per_second",
    "limits",
)
USER_KEYS = ("name", "password_hash", "password_file")
GROUP_KEYS = ("name", "members")
TOKEN_KEYS = ("name", "id", "hash", "created", "expires")
CLIENT_KEYS = ("cidr", "identity")
ACL_KEYS = ("who", "registry", "repository", "actions", "effect")
LIMIT_KEYS = ("who", "requests_per_minute", "bytes_per_second")
RATE_KEYS = ("requests_per_minute", "bytes_per_second")


def access_changes(reader: TableReader, data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Config`` fields set by the top-level ``allow_clients`` and ``[access]`` keys."""
    changes: dict[str, Any] = {}
    if "allow_clients" in data:
        changes["allow_clients"] = parse_allow_clients(
            reader.string_list(data, "allow_clients"), reader.at("allow_clients")
        )
    if "access" in data:
        changes["access"] = parse_access(reader, reader.table(data, "access"))
    return changes


def parse_allow_clients(items: Sequence[str], where: str) -> tuple[Network, ...]:
    """CIDR blocks (or single addresses); an empty list is refused: it would lock everyone out."""
    networks = []
    for item in items:
        text = item.strip()
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(
                where, f"{item!r} is not an address or CIDR block (10.0.0.0/8, fd00::/8)"
            ) from None
    if not networks:
        raise ConfigError(
            where, "empty: no client could connect (leave it out for the private-network default)"
        )
    return tuple(networks)


def format_allow_clients(networks: Sequence[Network]) -> list[str]:
    return [str(network) for network in networks]


# The checks are the protocol's (protocol.access_input), shared with the CLI and the dashboard; here
# their refusals become ConfigErrors naming the file and key.


@contextmanager
def _at(where: str) -> Iterator[None]:
    try:
        yield
    except AccessInputError as exc:
        raise ConfigError(where, exc.message) from None


def check_name(value: object, where: str) -> str:
    with _at(where):
        return shared.check_name(value, where)


def check_identity_name(value: object, where: str) -> str:
    """A name something can log in as: ``anonymous`` is the client that did not."""
    with _at(where):
        return shared.check_identity_name(value, where)


def parse_access(reader: TableReader, table: Mapping[str, Any]) -> AccessConfig:
    reader.check_keys(table, ACCESS_KEYS, "access.")
    values: dict[str, Any] = {}
    if "enabled" in table:
        values["enabled"] = reader.boolean(table, "enabled", "access.")
    if "verdict_ttl" in table:
        ttl = parse_time(
            reader.number_or_str(table, "verdict_ttl", "access."), reader.at("access.verdict_ttl")
        )
        if ttl > 3600:
            raise ConfigError(reader.at("access.verdict_ttl"), "at most 1h: a removed user must not linger")
        values["verdict_ttl"] = ttl
    users: dict[str, User] = {}
    if "htpasswd_file" in table:
        path = reader.path(table, "htpasswd_file", "access.")
        for user in read_htpasswd(path, reader.at("access.htpasswd_file")):
            users[user.name] = user
    for i, item in enumerate(reader.tables(table.get("users", []), "access.users")):
        prefix = f"access.users[{i}]."
        user = _user(reader, item, prefix)
        if user.name in users:
            raise ConfigError(reader.at(prefix + "name"), f"user {user.name!r} is defined twice")
        users[user.name] = user
    values["users"] = tuple(users.values())
    groups: dict[str, Group] = {}
    for i, item in enumerate(reader.tables(table.get("groups", []), "access.groups")):
        prefix = f"access.groups[{i}]."
        reader.check_keys(item, GROUP_KEYS, prefix)
        name = check_name(_required(reader, item, "name", prefix), reader.at(prefix + "name"))
        if name in groups:
            raise ConfigError(reader.at(prefix + "name"), f"group {name!r} is defined twice")
        members = reader.string_list(item, "members", prefix) if "members" in item else []
        for member in members:
            check_name(member, reader.at(prefix + "members"))
        groups[name] = Group(name, tuple(dict.fromkeys(members)))
    values["groups"] = tuple(groups.values())
    tokens: dict[str, RobotToken] = {}
    for i, item in enumerate(reader.tables(table.get("tokens", []), "access.tokens")):
        token = _token(reader, item, f"access.tokens[{i}].")
        if token.token_id in tokens:
            raise ConfigError(
                reader.at(f"access.tokens[{i}].id"), f"token id {token.token_id!r} is used twice"
            )
        tokens[token.token_id] = token
    values["tokens"] = tuple(tokens.values())
    clients = []
    for i, item in enumerate(reader.tables(table.get("clients", []), "access.clients")):
        prefix = f"access.clients[{i}]."
        reader.check_keys(item, CLIENT_KEYS, prefix)
        _required(reader, item, "cidr", prefix)
        cidr = reader.string(item, "cidr", prefix)
        network = parse_allow_clients([cidr], reader.at(prefix + "cidr"))[0]
        identity = check_identity_name(
            _required(reader, item, "identity", prefix), reader.at(prefix + "identity")
        )
        clients.append(ClientMapping(network, identity))
    values["clients"] = tuple(clients)
    values["acl"] = tuple(
        parse_rule(reader, item, f"access.acl[{i}].", frozenset(groups))
        for i, item in enumerate(reader.tables(table.get("acl", []), "access.acl"))
    )
    values["limit"] = parse_rate(reader, table, "access.", unlimited=False)
    values["limits"] = tuple(
        parse_limit(reader, item, f"access.limits[{i}].", frozenset(groups))
        for i, item in enumerate(reader.tables(table.get("limits", []), "access.limits"))
    )
    return AccessConfig(**values)


def _required(reader: TableReader, table: Mapping[str, Any], key: str, prefix: str) -> Any:
    if key not in table:
        raise ConfigError(reader.at(prefix + key), "required")
    return table[key]


def _user(reader: TableReader, table: Mapping[str, Any], prefix: str) -> User:
    reader.check_keys(table, USER_KEYS, prefix)
    name = check_identity_name(_required(reader, table, "name", prefix), reader.at(prefix + "name"))
    given = [key for key in ("password_hash", "password_file") if key in table]
    if len(given) != 1:
        raise ConfigError(
            reader.at(prefix.rstrip(".")), f"user {name!r} needs one of password_hash, password_file"
        )
    if given[0] == "password_hash":
        where = reader.at(prefix + "password_hash")
        return User(name, check_password_hash(reader.string(table, "password_hash", prefix), where))
    path = reader.path(table, "password_file", prefix)
    where = reader.at(prefix + "password_file")
    text = _read(path, where)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) == 1 and ":" not in lines[0]:
        return User(name, check_password_hash(lines[0], f"{where} ({path})"), path)
    for number, line in enumerate(lines, 1):
        if line.split(":", 1)[0] == name:
            return User(name, check_password_hash(line.split(":", 1)[1], f"{path}:{number}"), path)
    raise ConfigError(where, f"{path} has no line for user {name!r}")


def _read(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(where, f"{path} is not UTF-8 text") from None


def read_htpasswd(path: Path, where: str) -> list[User]:
    """Users from an htpasswd file (``htpasswd -B``: bcrypt); other hash kinds are refused by line."""
    users: dict[str, User] = {}
    for number, line in enumerate(_read(path, where).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        at = f"{path}:{number}"
        if not sep:
            raise ConfigError(at, "expected user:hash")
        check_name(name, at)
        if name in users:
            raise ConfigError(at, f"user {name!r} appears twice")
        users[name] = User(name, check_password_hash(stored, at), path)
    return list(users.values())


def _epoch(reader: TableReader, table: Mapping[str, Any], key: str, prefix: str) -> float | None:
    if key not in table:
        return None
    value = table[key]
    where = reader.at(prefix + key)
    if isinstance(value, str):
        if value.strip().lower() == "never":
            return None
        try:
            value = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(where, f"expected a date-time (2027-01-31T00:00:00Z), got {value!r}") from None
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = datetime.datetime.combine(value, datetime.time(), datetime.UTC)
    if not isinstance(value, datetime.datetime):
        raise ConfigError(where, f"expected a date-time (2027-01-31T00:00:00Z), got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()


def _token(reader: TableReader, table: Mapping[str, Any], prefix: str) -> RobotToken:
    reader.check_keys(table, TOKEN_KEYS, prefix)
    name = check_identity_name(_required(reader, table, "name", prefix), reader.at(prefix + "name"))
    token_id = check_token_id(str(_required(reader, table, "id", prefix)), reader.at(prefix + "id"))
    digest = check_token_digest(str(_required(reader, table, "hash", prefix)), reader.at(prefix + "hash"))
    return RobotToken(
        name,
        token_id,
        digest,
        created=_epoch(reader, table, "created", prefix),
        expires=_epoch(reader, table, "expires", prefix),
    )


def _check_who(who: str, at: str, groups: frozenset[str]) -> None:
    with _at(at):
        shared.check_who(who, groups)


def parse_rule(reader: TableReader, table: Mapping[str, Any], prefix: str, groups: frozenset[str]) -> AclRule:
    reader.check_keys(table, ACL_KEYS, prefix)
    _required(reader, table, "who", prefix)
    who = reader.string(table, "who", prefix)
    at = reader.at(prefix + "who")
    _check_who(who, at, groups)
    if "actions" not in table:
        raise ConfigError(reader.at(prefix + "actions"), "required: a list of pull, push, tunnel, admin")
    with _at(reader.at(prefix + "actions")):
        actions = [Action(a) for a in shared.parse_actions(reader.string_list(table, "actions", prefix))]
    registry = ANYONE
    if "registry" in table:
        text = reader.string(table, "registry", prefix).strip().lower()
        registry = text if text == ANYONE else parse_host(text, reader.at(prefix + "registry"))
    repository = "**"
    if "repository" in table:
        repository = check_glob(reader.string(table, "repository", prefix), reader.at(prefix + "repository"))
    effect = Effect.ALLOW
    if "effect" in table:
        with _at(reader.at(prefix + "effect")):
            effect = Effect(shared.parse_effect(reader.string(table, "effect", prefix)))
    return AclRule(
        who=who, actions=frozenset(actions), registry=registry, repository=repository, effect=effect
    )


def check_glob(value: str, where: str) -> str:
    with _at(where):
        return shared.check_glob(value, where)


def parse_rate(reader: TableReader, table: Mapping[str, Any], prefix: str, *, unlimited: bool) -> RateLimit:
    """``requests_per_minute`` (a whole number) and ``bytes_per_second`` (a size: ``50m``) of a table.

    Zero is refused (it would lock the identity out; leave the key out for no limit); an
    ``[[access.limits]]`` entry may say ``"unlimited"`` to lift the default for its identity.
    """
    values: dict[str, float] = {}
    for key in RATE_KEYS:
        if key not in table:
            continue
        value = table[key]
        where = reader.at(prefix + key)
        if isinstance(value, str) and value.strip().lower() == "unlimited":
            if not unlimited:
                raise ConfigError(where, '"unlimited" is for [[access.limits]] entries: leave the key out')
            values[key] = UNLIMITED
            continue
        if key == "requests_per_minute":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(where, f"expected a whole number of requests, got {value!r}")
            number = value
        else:
            if not isinstance(value, str | int):
                raise ConfigError(where, f"expected a size per second (50m, 1g, bytes), got {value!r}")
            number = parse_size(value, where)
        if number <= 0:
            hint = ' or "unlimited"' if unlimited else ""
            raise ConfigError(where, f"must be at least 1 (leave it out for no limit{hint})")
        values[key] = float(number)
    return RateLimit(values.get("requests_per_minute"), values.get("bytes_per_second"))


def parse_limit(
    reader: TableReader, table: Mapping[str, Any], prefix: str, groups: frozenset[str]
) -> IdentityLimit:
    reader.check_keys(table, LIMIT_KEYS, prefix)
    who = reader.string(table, "who", prefix) if "who" in table else _required(reader, table, "who", prefix)
    at = reader.at(prefix + "who")
    if who == ANYONE:
        raise ConfigError(at, "use access.requests_per_minute / access.bytes_per_second for everyone")
    _check_who(who, at, groups)
    limit = parse_rate(reader, table, prefix, unlimited=True)
    if limit == RateLimit():
        raise ConfigError(reader.at(prefix.rstrip(".")), "needs requests_per_minute or bytes_per_second")
    return IdentityLimit(who, limit)


def format_rate(value: float, key: str) -> int | str:
    """A limit as the TOML holds it (``render_access``)."""
    if value == UNLIMITED:
        return "unlimited"
    return int(value) if key == "requests_per_minute" else format_size(int(value))
