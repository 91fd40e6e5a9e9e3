"""Access control endpoints on the control socket: the view, user/token/rule edits, ``acl check``.

Edits go through ``ConfigEdits`` (the file edited with comments kept, validated whole, written
atomically, the configuration rebuilt and swapped in), so a change takes effect at once: a removed
user's cached verdicts are forgotten when the engine's authenticator sees the new users.  The
engine never receives a password or a token secret here, only their hashes (see protocol.access).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import tomlkit
from aiohttp import web

from appliance import protocol as p
from appliance.access.acl import check_named
from appliance.access.network import ClientFloor
from appliance.config import access_edit, toml_edit
from appliance.config.access import AclRule, Action, check_password_hash, check_token_digest, check_token_id
from appliance.config.access_toml import check_identity_name, parse_rule
from appliance.config.model import Config
from appliance.config.toml_keys import TableReader
from appliance.control.edits import ConfigEdits
from appliance.control.http import Refused, json_response, read_body
from appliance.protocol import access as pa
from appliance.protocol.endpoints import ACCESS, ACCESS_ACL, ACCESS_CHECK, ACCESS_TOKENS, ACCESS_USERS

if TYPE_CHECKING:
    from appliance.engine import Engine


def access_view(
    config: Config, floor: ClientFloor, last_used: Mapping[str, float], now: float
) -> pa.AccessView:
    access = config.access
    return pa.AccessView(
        enabled=access.enabled,
        allow_clients=tuple(str(network) for network in floor.networks),
        users=tuple(
            pa.UserView(
                name=user.name,
                source=str(user.password_file) if user.password_file else "config",
                groups=tuple(sorted(access.groups_of(user.name))),
            )
            for user in access.users
        ),
        groups=tuple(pa.GroupView(group.name, group.members) for group in access.groups),
        tokens=tuple(
            pa.TokenView(
                name=token.name,
                id=token.token_id,
                created=token.created,
                expires=token.expires,
                last_used=last_used.get(token.token_id),
                expired=token.expired(now),
            )
            for token in access.tokens
        ),
        clients=tuple(pa.ClientView(str(c.network), c.identity) for c in access.clients),
        acl=tuple(rule_view(i, rule) for i, rule in enumerate(access.acl)),
    )


def rule_view(index: int, rule: AclRule) -> pa.RuleView:
    return pa.RuleView(
        index=index,
        who=rule.who,
        actions=tuple(sorted(str(a) for a in rule.actions)),
        registry=rule.registry,
        repository=rule.repository,
        effect=str(rule.effect),
    )


def rule_from_edit(edit: pa.RuleEdit, groups: frozenset[str]) -> AclRule:
    """A rule as the CLI or the dashboard sends it, validated as the TOML file's rules are."""
    table = {
        "who": edit.who,
        "actions": list(edit.actions),
        "registry": edit.registry,
        "repository": edit.repository,
        "effect": edit.effect,
    }
    return parse_rule(TableReader("rule", None), table, "", groups)


def check_decision(config: Config, check: pa.AccessCheck) -> pa.AccessDecision:
    try:
        action = Action(check.action.strip().lower())
    except ValueError:
        raise Refused(
            p.ErrorCode.BAD_REQUEST, f"unknown action {check.action!r}: pull, push, tunnel or admin", "action"
        ) from None
    identity, decision = check_named(config, check.identity, check.registry, check.repository, action)
    return pa.AccessDecision(
        allowed=decision.allowed,
        reason=decision.reason,
        rule=decision.rule,
        groups=tuple(sorted(identity.groups)),
    )


def _rule_index(request: web.Request) -> int:
    text = request.match_info["index"]
    if not text.isdigit():
        raise Refused(p.ErrorCode.BAD_REQUEST, f"rule index {text!r} is not a number", "index")
    return int(text)


class AccessEndpoints:
    """The ``/v1/access`` routes for ``engine``, editing through ``edits``."""

    def __init__(self, engine: Engine, edits: ConfigEdits) -> None:
        self.engine = engine
        self.edits = edits

    def register(self, app: web.Application) -> None:
        app.router.add_get(ACCESS, self.view)
        app.router.add_post(ACCESS_USERS, self.add_user)
        app.router.add_patch(ACCESS_USERS + "/{name}", self.set_password)
        app.router.add_delete(ACCESS_USERS + "/{name}", self.remove_user)
        app.router.add_post(ACCESS_TOKENS, self.add_token)
        app.router.add_delete(ACCESS_TOKENS + "/{id}", self.remove_token)
        app.router.add_post(ACCESS_ACL, self.add_rule)
        app.router.add_patch(ACCESS_ACL + "/{index}", self.move_rule)
        app.router.add_delete(ACCESS_ACL + "/{index}", self.remove_rule)
        app.router.add_post(ACCESS_CHECK, self.check)

    async def view(self, request: web.Request) -> web.Response:
        engine = self.engine
        return json_response(
            access_view(engine.config, engine.door.floor, engine.authenticator.last_used, time.time())
        )

    async def _change(self, what: str, change: access_edit.DocumentChange) -> web.Response:
        env = self.edits.source.environ

        def edit(path: Path) -> Config:
            return toml_edit.edit_document(path, change, env)

        return await self.edits._edit(what, edit)

    async def add_user(self, request: web.Request) -> web.Response:
        edit = pa.UserEdit.from_json(await read_body(request))
        name = check_identity_name(edit.name, "name")
        password_hash = check_password_hash(edit.password_hash, "password_hash")

        def change(document: tomlkit.TOMLDocument) -> None:
            access_edit.add_user(document, name, password_hash, edit.groups)

        return await self._change(f"user {name} added", change)

    async def set_password(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        edit = pa.UserEdit.from_json(await read_body(request))
        password_hash = check_password_hash(edit.password_hash, "password_hash")
        return await self._change(
            f"password of user {name} changed",
            lambda document: access_edit.set_password(document, name, password_hash),
        )

    async def remove_user(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return await self._change(
            f"user {name} removed", lambda document: access_edit.remove_user(document, name)
        )

    async def add_token(self, request: web.Request) -> web.Response:
        edit = pa.TokenEdit.from_json(await read_body(request))
        name = check_identity_name(edit.name, "name")
        token_id = check_token_id(edit.id, "id")
        digest = check_token_digest(edit.hash, "hash")
        return await self._change(
            f"token {token_id} for {name} created",
            lambda document: access_edit.add_token(
                document, name, token_id, digest, edit.created, edit.expires
            ),
        )

    async def remove_token(self, request: web.Request) -> web.Response:
        token_id = request.match_info["id"]
        return await self._change(
            f"token {token_id} removed", lambda document: access_edit.remove_token(document, token_id)
        )

    async def add_rule(self, request: web.Request) -> web.Response:
        edit = pa.RuleEdit.from_json(await read_body(request))
        groups = frozenset(group.name for group in self.engine.config.access.groups)
        rule = rule_from_edit(edit, groups)
        return await self._change(
            f"rule {rule.effect} {rule.who} added",
            lambda document: access_edit.add_rule(document, rule, edit.position),
        )

    async def remove_rule(self, request: web.Request) -> web.Response:
        index = _rule_index(request)
        return await self._change(
            f"rule {index} removed", lambda document: access_edit.remove_rule(document, index)
        )

    async def move_rule(self, request: web.Request) -> web.Response:
        index = _rule_index(request)
        move = pa.RuleMove.from_json(await read_body(request))
        return await self._change(
            f"rule {index} moved to {move.position}",
            lambda document: access_edit.move_rule(document, index, move.position),
        )

    async def check(self, request: web.Request) -> web.Response:
        wanted = pa.AccessCheck.from_json(await read_body(request))
        return json_response(check_decision(self.engine.config, wanted))
