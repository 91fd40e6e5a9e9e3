"""Edits of the ``[access]`` table in the TOML file, and its rendering: users, tokens, ACL rules.

Part of the ``config_file*`` modules: every edit goes through ``toml_edit``'s edit step (tomlkit, so
comments and layout are kept; the whole resulting document validated before the atomic write).  A
file holding password or token hashes is written 0600.  Callers hash first: no function here ever
sees a password or a token secret, only ``$scrypt$...`` and ``sha256:...``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from appliance.config.access import AccessConfig, AclRule, Effect
from appliance.config.access_toml import RATE_KEYS, check_identity_name, format_allow_clients, format_rate
from appliance.config.model import Config
from appliance.errors import ConfigError

DocumentChange = Callable[[tomlkit.TOMLDocument], None]


def holds_hashes(data: Mapping[str, Any]) -> bool:
    """True when the (plain) document holds password or token hashes: keep it 0600."""
    access = data.get("access")
    if not isinstance(access, dict):
        return False
    return any(isinstance(access.get(key), list) and access[key] for key in ("users", "tokens"))


def _access_table(document: tomlkit.TOMLDocument) -> Table:
    current = document.get("access")
    if isinstance(current, Table):
        return current
    if current is not None:
        raise ConfigError("access", "expected a table ([access])")
    table = tomlkit.table()
    document["access"] = table
    return table


def _aot(table: Table, key: str) -> AoT:
    current = table.get(key)
    if isinstance(current, AoT):
        return current
    if current:
        raise ConfigError(f"access.{key}", f"expected an array of tables ([[access.{key}]])")
    if key in table:
        del table[key]
    aot = tomlkit.aot()
    table[key] = aot
    return aot


def _drop_if_empty(table: Table, key: str) -> None:
    if key in table and not len(table[key]):
        del table[key]


def _index(aot: AoT, key: str, value: str) -> int | None:
    return next((i for i, item in enumerate(aot) if item.get(key) == value), None)


def _when(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)


# --- users ---------------------------------------------------------------------------------------


def add_user(document: tomlkit.TOMLDocument, name: str, password_hash: str, groups: tuple[str, ...]) -> None:
    check_identity_name(name, "user")
    access = _access_table(document)
    users = _aot(access, "users")
    if _index(users, "name", name) is not None:
        raise ConfigError(f"user {name}", "already exists (appliance user passwd changes a password)")
    table = tomlkit.table()
    table["name"] = name
    table["password_hash"] = password_hash
    table.add(tomlkit.nl())
    users.append(table)
    for group in groups:
        add_member(document, group, name)


def set_password(document: tomlkit.TOMLDocument, name: str, password_hash: str) -> None:
    access = _access_table(document)
    users = _aot(access, "users")
    index = _index(users, "name", name)
    if index is None:
        _drop_if_empty(access, "users")
        raise ConfigError(
            f"user {name}", "no such user in the config file (an htpasswd_file user: edit it there)"
        )
    users[index]["password_hash"] = password_hash
    if "password_file" in users[index]:
        del users[index]["password_file"]


def remove_user(document: tomlkit.TOMLDocument, name: str) -> None:
    access = _access_table(document)
    users = _aot(access, "users")
    index = _index(users, "name", name)
    if index is None:
        _drop_if_empty(access, "users")
        raise ConfigError(f"user {name}", "no such user in the config file")
    del users[index]
    _drop_if_empty(access, "users")
    groups = access.get("groups")
    if isinstance(groups, AoT):
        for group in groups:
            members = group.get("members")
            if isinstance(members, list) and name in members:
                members.remove(name)


def add_member(document: tomlkit.TOMLDocument, group: str, member: str) -> None:
    from appliance.config.access_toml import check_name

    check_name(group, "group")
    groups = _aot(_access_table(document), "groups")
    index = _index(groups, "name", group)
    if index is None:
        table = tomlkit.table()
        table["name"] = group
        table["members"] = [member]
        table.add(tomlkit.nl())
        groups.append(table)
        return
    members = groups[index].setdefault("members", tomlkit.array())
    if member not in members:
        members.append(member)


# --- tokens --------------------------------------------------------------------------------------


def add_token(
    document: tomlkit.TOMLDocument,
    name: str,
    token_id: str,
    digest: str,
    created: float,
    expires: float | None,
) -> None:
    check_identity_name(name, "token")
    tokens = _aot(_access_table(document), "tokens")
    table = tomlkit.table()
    table["name"] = name
    table["id"] = token_id
    table["hash"] = digest
    table["created"] = _when(created)
    if expires is not None:
        table["expires"] = _when(expires)
    table.add(tomlkit.nl())
    tokens.append(table)


def remove_token(document: tomlkit.TOMLDocument, token_id: str) -> None:
    access = _access_table(document)
    tokens = _aot(access, "tokens")
    index = _index(tokens, "id", token_id)
    if index is None:
        _drop_if_empty(access, "tokens")
        raise ConfigError(f"token {token_id}", "no such token in the config file (appliance token ls)")
    del tokens[index]
    _drop_if_empty(access, "tokens")


# --- ACL -----------------------------------------------------------------------------------------


def rule_table(rule: AclRule) -> Table:
    table = tomlkit.table()
    table["who"] = rule.who
    if rule.registry != "*":
        table["registry"] = rule.registry
    if rule.repository != "**":
        table["repository"] = rule.repository
    table["actions"] = sorted(str(action) for action in rule.actions)
    if rule.effect is not Effect.ALLOW:
        table["effect"] = str(rule.effect)
    table.add(tomlkit.nl())
    return table


def add_rule(document: tomlkit.TOMLDocument, rule: AclRule, position: int | None) -> None:
    """Insert ``rule`` before rule ``position`` (0-based), or append it."""
    acl = _aot(_access_table(document), "acl")
    table = rule_table(rule)
    if position is None or position >= len(acl):
        acl.append(table)
        return
    if position < 0:
        raise ConfigError("position", f"{position}: expected 0 or more")
    acl.insert(position, table)


def remove_rule(document: tomlkit.TOMLDocument, index: int) -> None:
    access = _access_table(document)
    acl = _aot(access, "acl")
    if not 0 <= index < len(acl):
        _drop_if_empty(access, "acl")
        raise ConfigError(f"rule {index}", f"no such rule (there are {len(acl)}; appliance acl ls)")
    del acl[index]
    _drop_if_empty(access, "acl")


def move_rule(document: tomlkit.TOMLDocument, index: int, position: int) -> None:
    """Move rule ``index`` so that it is rule ``position`` afterwards (first match decides: order matters)."""
    access = _access_table(document)
    acl = _aot(access, "acl")
    count = len(acl)
    if not 0 <= index < count:
        _drop_if_empty(access, "acl")
        raise ConfigError(f"rule {index}", f"no such rule (there are {count}; appliance acl ls)")
    if not 0 <= position < count:
        raise ConfigError("position", f"{position}: expected 0 to {count - 1}")
    if index == position:
        return
    moved = acl[index]
    del acl[index]
    if position >= len(acl):
        acl.append(moved)
    else:
        acl.insert(position, moved)


def set_enabled(document: tomlkit.TOMLDocument, enabled: bool) -> None:
    _access_table(document)["enabled"] = enabled


# --- rendering (config import-env) ---------------------------------------------------------------


def render_access(doc: tomlkit.TOMLDocument, config: Config, defaults: Config) -> None:
    """``allow_clients`` (set, or its default as a comment) and ``[access]`` when it is not empty."""
    doc.add(tomlkit.nl())
    doc.add(tomlkit.comment("ALLOW_CLIENTS: source networks allowed to connect (default: private ones)."))
    if config.allow_clients is not None and config.allow_clients != defaults.allow_clients:
        doc.add("allow_clients", format_allow_clients(config.allow_clients))
    else:
        doc.add(tomlkit.comment('allow_clients = ["10.0.0.0/8", "192.168.0.0/16", "127.0.0.1"]'))
    if config.access == AccessConfig():
        doc.add(tomlkit.comment("[access]: users, tokens and ACL rules (appliance user|token|acl ...)."))
        return
    access = config.access
    table = tomlkit.table()
    table["enabled"] = access.enabled
    for key in RATE_KEYS:
        value = getattr(access.limit, key)
        if value is not None:
            table[key] = format_rate(value, key)
    for user in access.users:
        entry = {"name": user.name}
        entry.update({"password_file": str(user.password_file)} if user.password_file else {})
        entry.update({} if user.password_file else {"password_hash": user.password_hash})
        _aot(table, "users").append(tomlkit.item(entry))
    for group in access.groups:
        _aot(table, "groups").append(tomlkit.item({"name": group.name, "members": list(group.members)}))
    for token in access.tokens:
        item: dict[str, Any] = {"name": token.name, "id": token.token_id, "hash": token.digest}
        if token.created is not None:
            item["created"] = _when(token.created)
        if token.expires is not None:
            item["expires"] = _when(token.expires)
        _aot(table, "tokens").append(tomlkit.item(item))
    for client in access.clients:
        _aot(table, "clients").append(
            tomlkit.item({"cidr": str(client.network), "identity": client.identity})
        )
    for rule in access.acl:
        _aot(table, "acl").append(rule_table(rule))
    for limited in access.limits:
        limit: dict[str, Any] = {"who": limited.who}
        for key in RATE_KEYS:
            value = getattr(limited.limit, key)
            if value is not None:
                limit[key] = format_rate(value, key)
        _aot(table, "limits").append(tomlkit.item(limit))
    doc.add(tomlkit.nl())
    doc.add("access", table)
