"""``appliance user|token|acl``: client identities and access rules.

Through the running engine's control socket when one answers (the change applies at once), else
straight on the TOML file (comments kept; it takes effect when the engine starts).  Passwords are
read from a prompt or ``--password-stdin``, never from an argument, and hashed here: neither the
socket nor the file ever sees one.  A robot token is made here too and printed once, on stdout
alone; only its digest is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import getpass
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from appliance import protocol as p
from appliance.control.client import ControlClient, ControlError, EngineUnavailable
from appliance.errors import ConfigError
from appliance.protocol import access as pa
from appliance.protocol.access_input import (
    AccessInputError,
    check_password,
    hash_password,
    new_token,
    token_expiry,
)
from appliance.protocol.endpoints import ACCESS, ACCESS_ACL, ACCESS_CHECK, ACCESS_TOKENS, ACCESS_USERS

T = TypeVar("T")
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_REFUSED = 2
DEFAULT_TOKEN_LIFE = "90d"


# --- where the change goes ----------------------------------------------------------------------


def _socket(args: argparse.Namespace) -> Path:
    from appliance.cli.control_commands import socket_path

    return socket_path(args)


def _online(args: argparse.Namespace, call: Callable[[ControlClient], Awaitable[T]]) -> T:
    """``call`` on the running engine; EngineUnavailable when none answers (``--offline``: never)."""
    if args.offline:
        raise EngineUnavailable("--offline")

    async def main() -> T:
        async with ControlClient(_socket(args)) as client:
            return await call(client)

    return asyncio.run(main())


def _file(args: argparse.Namespace) -> Path:
    from appliance.config.load import find_config_path
    from appliance.config.values import default_config_path

    return find_config_path(args.config, os.environ) or default_config_path(os.environ)


def _offline_config(args: argparse.Namespace) -> Any:
    from appliance.config.load import load_config

    return load_config(None, os.environ, args.config).config


def _edit(
    args: argparse.Namespace,
    what: str,
    call: Callable[[ControlClient], Awaitable[p.ConfigChange]],
    change: Callable[[Any], None],
) -> int:
    """Apply through the engine, or to the file when no engine runs."""
    try:
        answer = _online(args, call)
    except EngineUnavailable:
        from appliance.config.toml_edit import edit_document

        path = _file(args)
        edit_document(path, change, os.environ)
        print(f"appliance: {what}; written to {path} (no engine running: applies when it starts)")
        return EXIT_OK
    print(f"appliance: {answer.message}" + ("" if answer.applied else " (NOT applied)"))
    for warning in answer.warnings:
        print(f"appliance: warning: {warning}", file=sys.stderr)
    return EXIT_OK if answer.applied else EXIT_FAILURE


def _view(args: argparse.Namespace) -> pa.AccessView:
    try:
        return _online(args, lambda c: c._call("GET", ACCESS, pa.AccessView))
    except EngineUnavailable:
        from appliance.access.network import client_floor
        from appliance.control.access import access_view

        config = _offline_config(args)
        floor = client_floor(config.allow_clients, config.access.enabled)
        return access_view(config, floor, {}, time.time())


def _read_password(args: argparse.Namespace, name: str) -> str:
    again: str | None = None
    if args.password_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = getpass.getpass(f"password for {name}: ")
        again = getpass.getpass(f"again, password for {name}: ")
    try:
        return check_password(value, again)
    except AccessInputError as exc:
        raise ConfigError(f"user {name}", exc.message) from None


def _hash(args: argparse.Namespace, name: str) -> str:
    return hash_password(_read_password(args, name))


# --- user ----------------------------------------------------------------------------------------


def user_add(args: argparse.Namespace) -> int:
    from appliance.config import access_edit

    edit = pa.UserEdit(name=args.name, password_hash=_hash(args, args.name), groups=tuple(args.group))
    return _edit(
        args,
        f"user {args.name} added",
        lambda c: c._call("POST", ACCESS_USERS, p.ConfigChange, edit),
        lambda doc: access_edit.add_user(doc, edit.name, edit.password_hash, edit.groups),
    )


def user_passwd(args: argparse.Namespace) -> int:
    from appliance.config import access_edit

    edit = pa.UserEdit(name=args.name, password_hash=_hash(args, args.name))
    return _edit(
        args,
        f"password of user {args.name} changed",
        lambda c: c._call("PATCH", f"{ACCESS_USERS}/{args.name}", p.ConfigChange, edit),
        lambda doc: access_edit.set_password(doc, edit.name, edit.password_hash),
    )


def user_rm(args: argparse.Namespace) -> int:
    from appliance.config import access_edit

    return _edit(
        args,
        f"user {args.name} removed",
        lambda c: c._call("DELETE", f"{ACCESS_USERS}/{args.name}", p.ConfigChange),
        lambda doc: access_edit.remove_user(doc, args.name),
    )


def user_ls(args: argparse.Namespace) -> int:
    view = _view(args)
    if args.json:
        print(json.dumps([u.to_json() for u in view.users], indent=2))
        return EXIT_OK
    for user in view.users:
        groups = ", ".join(user.groups) or "-"
        source = "in the config file" if user.source == "config" else user.source
        print(f"{user.name}  groups: {groups}  password: {source}")
    return EXIT_OK


# --- token ---------------------------------------------------------------------------------------


def _expiry(text: str, now: float) -> float | None:
    try:
        return token_expiry(text, now, "--expires")
    except AccessInputError as exc:
        raise ConfigError("--expires", exc.message) from None


def _date(epoch: float | None, none: str) -> str:
    if epoch is None:
        return none
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def token_create(args: argparse.Namespace) -> int:
    from appliance.config import access_edit

    now = time.time()
    expires = _expiry(args.expires, now)
    made = new_token()
    edit = pa.TokenEdit(name=args.name, id=made.token_id, hash=made.digest, created=now, expires=expires)
    status = _edit(
        args,
        f"token {made.token_id} for {args.name} created",
        lambda c: c._call("POST", ACCESS_TOKENS, p.ConfigChange, edit),
        lambda doc: access_edit.add_token(doc, edit.name, edit.id, edit.hash, now, expires),
    )
    if status == EXIT_OK:
        print(
            f"appliance: the token, shown this once (expires {_date(expires, 'never')}); use it as the "
            f"password of any user name, or as a Bearer token:",
            file=sys.stderr,
        )
        sys.stdout.write(made.secret + "\n")
    return status


def token_rm(args: argparse.Namespace) -> int:
    from appliance.config import access_edit

    return _edit(
        args,
        f"token {args.id} removed",
        lambda c: c._call("DELETE", f"{ACCESS_TOKENS}/{args.id}", p.ConfigChange),
        lambda doc: access_edit.remove_token(doc, args.id),
    )


def token_ls(args: argparse.Namespace) -> int:
    view = _view(args)
    if args.json:
        print(json.dumps([t.to_json() for t in view.tokens], indent=2))
        return EXIT_OK
    for token in view.tokens:
        state = "EXPIRED" if token.expired else f"expires {_date(token.expires, 'never')}"
        print(
            f"{token.id}  {token.name}  created {_date(token.created, '?')}  {state}  "
            f"last used {_date(token.last_used, 'never (since the engine started)')}"
        )
    return EXIT_OK


# --- acl -----------------------------------------------------------------------------------------


def format_rule(rule: pa.RuleView) -> str:
    where = f"{rule.registry}/{rule.repository}"
    return f"{rule.index:>3}  {rule.effect:<5}  {rule.who}  {','.join(rule.actions)}  {where}"


def acl_ls(args: argparse.Namespace) -> int:
    view = _view(args)
    if args.json:
        print(json.dumps([r.to_json() for r in view.acl], indent=2))
        return EXIT_OK
    state = "on" if view.enabled else "OFF (every client the network floor lets in is allowed)"
    print(f"access control {state}; first match decides, no match denies")
    for rule in view.acl:
        print(format_rule(rule))
    return EXIT_OK


def acl_add(args: argparse.Namespace) -> int:
    from appliance.config import access_edit
    from appliance.control.access import rule_from_edit

    edit = pa.RuleEdit(
        who=args.who,
        actions=tuple(a.strip() for a in args.actions.split(",") if a.strip()),
        registry=args.registry,
        repository=args.repository,
        effect="deny" if args.deny else "allow",
        position=args.position,
    )

    def change(doc: Any) -> None:
        groups = doc.get("access", {}).get("groups", [])
        known = frozenset(str(g.get("name")) for g in groups)
        access_edit.add_rule(doc, rule_from_edit(edit, known), edit.position)

    return _edit(
        args,
        f"rule {edit.effect} {edit.who} added",
        lambda c: c._call("POST", ACCESS_ACL, p.ConfigChange, edit),
        change,
    )


def acl_rm(args: argparse.Namespace) -> int:
    from appliance.config import access_edit

    return _edit(
        args,
        f"rule {args.index} removed",
        lambda c: c._call("DELETE", f"{ACCESS_ACL}/{args.index}", p.ConfigChange),
        lambda doc: access_edit.remove_rule(doc, args.index),
    )


def acl_mv(args: argparse.Namespace) -> int:
    from appliance.config import access_edit

    return _edit(
        args,
        f"rule {args.index} moved to {args.position}",
        lambda c: c.move_rule(args.index, args.position),
        lambda doc: access_edit.move_rule(doc, args.index, args.position),
    )


def acl_check(args: argparse.Namespace) -> int:
    check = pa.AccessCheck(
        identity=args.identity, registry=args.registry, repository=args.repository, action=args.action
    )
    try:
        decision = _online(args, lambda c: c._call("POST", ACCESS_CHECK, pa.AccessDecision, check))
    except EngineUnavailable:
        from appliance.control.access import check_decision
        from appliance.control.http import Refused

        try:
            decision = check_decision(_offline_config(args), check)
        except Refused as exc:
            raise ConfigError(exc.body.where, exc.body.message) from None
    groups = f" (groups: {', '.join(decision.groups)})" if decision.groups else ""
    verdict = "allowed" if decision.allowed else "DENIED"
    target = f"{args.registry}/{args.repository}"
    print(f"{verdict}: {args.identity}{groups} {args.action} {target}: {decision.reason}")
    return EXIT_OK if decision.allowed else EXIT_FAILURE


# --- wiring --------------------------------------------------------------------------------------


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ControlError as exc:
            print(f"appliance: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
            return EXIT_REFUSED
        except p.ProtocolError as exc:
            print(f"appliance: protocol error: {exc}", file=sys.stderr)
            return EXIT_FAILURE

    return run


def _leaf(
    group: Any,
    name: str,
    help_text: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    json_flag: bool = False,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    parser.add_argument(
        "--socket",
        "--control-socket",
        dest="socket",
        metavar="PATH",
        help="control socket of the running engine",
    )
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML file (edited when no engine runs)")
    parser.add_argument("--offline", action="store_true", help="edit the file even if an engine runs")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print the protocol's JSON")
    parser.set_defaults(handler=_guarded(handler))
    return parser


def _group(subparsers: Any, name: str, help_text: str) -> Any:
    group = subparsers.add_parser(name, help=help_text, description=help_text)
    return group.add_subparsers(
        dest=f"{name}_command", metavar="SUBCOMMAND", required=True, parser_class=type(group)
    )


def register(subparsers: Any) -> None:
    user = _group(subparsers, "user", "users who log in to the appliance (client access control)")
    add = _leaf(user, "add", "add a user (password from a prompt or --password-stdin)", user_add)
    add.add_argument("name")
    add.add_argument(
        "--group", action="append", default=[], help="also put the user in this group (repeatable)"
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    passwd = _leaf(user, "passwd", "change a user's password", user_passwd)
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    rm = _leaf(user, "rm", "remove a user", user_rm)
    rm.add_argument("name")
    _leaf(user, "ls", "list users", user_ls, json_flag=True)

    token = _group(subparsers, "token", "robot tokens (rat_...): shown once, stored hashed")
    create = _leaf(token, "create", "make a token acting as NAME and print it once", token_create)
    create.add_argument("name", help="the identity it acts as: a user's name or a robot's")
    create.add_argument(
        "--expires",
        default=DEFAULT_TOKEN_LIFE,
        metavar="WHEN",
        help="a time (90d), a date, or never (default 90d)",
    )
    trm = _leaf(token, "rm", "revoke a token", token_rm)
    trm.add_argument("id", help="its id (appliance token ls)")
    _leaf(token, "ls", "list tokens (never their secrets)", token_ls, json_flag=True)

    acl = _group(subparsers, "acl", "access rules: ordered, first match decides, no match denies")
    _leaf(acl, "ls", "list the rules in order", acl_ls, json_flag=True)
    aadd = _leaf(acl, "add", "add a rule (at the end, or before --position)", acl_add)
    aadd.add_argument("who", help='a name, "@group", "*" or "anonymous"')
    aadd.add_argument("actions", help="comma-separated: pull, push, tunnel, admin")
    aadd.add_argument("--registry", default="*", help="a registry host (default: any)")
    aadd.add_argument("--repository", default="**", help="a glob: * within a segment, ** across (default **)")
    aadd.add_argument("--deny", action="store_true", help="a deny rule (default: allow)")
    aadd.add_argument("--position", type=int, metavar="N", help="insert before rule N")
    arm = _leaf(acl, "rm", "remove rule INDEX", acl_rm)
    arm.add_argument("index", type=int)
    amv = _leaf(acl, "mv", "move rule INDEX so that it is rule POSITION (first match decides)", acl_mv)
    amv.add_argument("index", type=int)
    amv.add_argument("position", type=int)
    check = _leaf(acl, "check", "what the rules decide for IDENTITY doing ACTION on REGISTRY/REPO", acl_check)
    check.add_argument("identity")
    check.add_argument("registry")
    check.add_argument("repository")
    check.add_argument("action", help="pull, push, tunnel or admin")
