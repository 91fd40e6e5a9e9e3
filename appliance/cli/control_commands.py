"""What each control command does: find the engine's socket, make the call, print the answer.

One function per command, each taking the parsed arguments and returning an exit status; the client's
errors are turned into messages by ``cli.control``, which wires these to the parser.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from appliance import protocol as p
from appliance.cli.control_text import (
    format_event,
    format_image,
    format_registry,
    format_stats,
    format_status,
)
from appliance.control.client import ControlClient, ControlError
from appliance.registry.references import parse_reference

T = TypeVar("T")
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_REFUSED = 2


def socket_path(args: argparse.Namespace) -> Path:
    """``--socket``, else the configuration's ``control_socket`` (file < env < defaults)."""
    if getattr(args, "socket", None):
        return Path(args.socket)
    from appliance.config.load import load_config
    from appliance.config.values import default_config
    from appliance.errors import ConfigError

    try:
        return load_config(None, os.environ, getattr(args, "config", None)).config.control_socket
    except ConfigError:
        return default_config(os.environ).control_socket


def _call(args: argparse.Namespace, call: Callable[[ControlClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with ControlClient(socket_path(args)) as client:
            return await call(client)

    return asyncio.run(main())


def engine_config(args: argparse.Namespace) -> p.ConfigView:
    """The running engine's configuration (raises EngineUnavailable when none answers)."""
    return _call(args, lambda c: c.config())


def _print_json(payload: p.Payload) -> None:
    print(json.dumps(payload.to_json(), indent=2))


# --- status, stats and events --------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    answer = _call(args, lambda c: c.status())
    _print_json(answer) if args.json else print(format_status(answer))
    return EXIT_OK


def stats(args: argparse.Namespace) -> int:
    answer = _call(args, lambda c: c.stats())
    _print_json(answer) if args.json else print(format_stats(answer))
    return EXIT_OK


def _split(values: list[str]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


async def _tail(client: ControlClient, args: argparse.Namespace) -> int:
    wanted = p.EventFilter.from_query(
        {
            "registry": ",".join(_split(args.registry)),
            "status": ",".join(_split(args.status)),
            "kind": ",".join(_split(args.kind)),
        }
    )
    stream = await client.events(wanted, replay=args.replay)
    remaining = stream.hello.replayed
    dropped = 0
    try:
        if not args.follow and remaining == 0:
            return EXIT_OK
        async for batch in stream:
            for event in batch.events:
                print(json.dumps(event.to_json()) if args.json else format_event(event), flush=True)
            if batch.dropped > dropped:
                print(
                    f"appliance: {batch.dropped - dropped} events dropped (reader too slow)", file=sys.stderr
                )
                dropped = batch.dropped
            remaining -= len(batch.events)
            if not args.follow and remaining <= 0:
                break
    finally:
        await stream.close()
    return EXIT_OK


def events(args: argparse.Namespace) -> int:
    try:
        return _call(args, lambda c: _tail(c, args))
    except KeyboardInterrupt:
        return EXIT_OK


# --- registries and credentials ------------------------------------------------------------------


def _report(change: p.ConfigChange) -> int:
    print(f"appliance: {change.message}" + ("" if change.applied else " (NOT applied)"))
    for warning in change.warnings:
        print(f"appliance: warning: {warning}", file=sys.stderr)
    if change.restart_required:
        print(f"appliance: restart needed for: {', '.join(change.restart_required)}", file=sys.stderr)
    return EXIT_OK if change.applied else EXIT_FAILURE


def _registry_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {"host": args.host}
    if args.alias:
        values["aliases"] = list(args.alias)
    if args.auth_host:
        values["auth_hosts"] = list(args.auth_host)
    if args.scheme:
        values["scheme"] = args.scheme
    if args.insecure:
        values["insecure"] = True
    if args.ca_file:
        values["ca_file"] = str(Path(args.ca_file).resolve())
    if args.allow_push is not None:
        values["allow_push"] = args.allow_push
    if args.manifest_cache is not None:
        values["manifest_cache"] = args.manifest_cache
    if args.tag_ttl:
        values["tag_ttl"] = args.tag_ttl
    return values


def registry_add(args: argparse.Namespace) -> int:
    values = _registry_values(args)
    return _report(_call(args, lambda c: c.add_registry(values)))


def registry_rm(args: argparse.Namespace) -> int:
    return _report(_call(args, lambda c: c.remove_registry(args.host)))


def registry_ls(args: argparse.Namespace) -> int:
    view = _call(args, lambda c: c.config())
    if args.json:
        print(json.dumps([r.to_json() for r in view.registries], indent=2))
        return EXIT_OK
    for r in view.registries:
        print(format_registry(r))
    return EXIT_OK


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = getpass.getpass(f"password for {args.username} at {args.scope}: ")
    if not value:
        raise ControlError(p.ErrorBody(p.ErrorCode.BAD_REQUEST, "an empty password was given"), 400)
    return value


def credential_set(args: argparse.Namespace) -> int:
    store = p.SecretStoreName(args.store)
    if store is p.SecretStoreName.FILE:
        if not args.file:
            raise ControlError(p.ErrorBody(p.ErrorCode.BAD_REQUEST, "--store file needs --file PATH"), 400)
        edit = p.CredentialEdit(
            scope=args.scope, username=args.username, store=store, reference=str(Path(args.file).resolve())
        )
    else:
        edit = p.CredentialEdit(
            scope=args.scope, username=args.username, store=store, password=read_password(args)
        )
    return _report(_call(args, lambda c: c.set_credential(edit)))


def credential_rm(args: argparse.Namespace) -> int:
    return _report(_call(args, lambda c: c.remove_credential(args.scope)))


# --- cache ---------------------------------------------------------------------------------------


def cache_ls(args: argparse.Namespace) -> int:
    listing = _call(args, lambda c: c.images(args.registry))
    if args.json:
        _print_json(listing)
        return EXIT_OK
    for image in listing.images:
        print(format_image(image))
    return EXIT_OK


def _image_target(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``IMAGE`` (``[registry/]repo``) or ``--registry``/``--repository`` -> (registry, repository)."""
    image = getattr(args, "image", None)
    if not image:
        return args.registry, getattr(args, "repository", None)
    ref = parse_reference(image)
    return ref.registry, ref.repository


def cache_purge(args: argparse.Namespace) -> int:
    registry, repository = _image_target(args)
    request = p.PurgeRequest(registry=registry, repository=repository, digest=args.digest, all=args.all)
    request.check()
    result = _call(args, lambda c: c.purge(request))
    print(f"appliance: {result.removed} cache entries removed")
    return EXIT_OK


def cache_pin(args: argparse.Namespace, pinned: bool) -> int:
    ref = parse_reference(args.image)
    result = _call(args, lambda c: c.pin(ref.registry, ref.repository, pinned))
    state = "pinned" if pinned else "unpinned"
    print(f"appliance: {ref.registry}/{ref.repository} {state} ({result.entries} entries now)")
    return EXIT_OK


def cache_verify(args: argparse.Namespace) -> int:
    result = _call(args, lambda c: c.verify(args.repair))
    _print_json(result) if args.json else print(result.summary)
    return EXIT_OK if result.consistent or result.repaired else EXIT_FAILURE
