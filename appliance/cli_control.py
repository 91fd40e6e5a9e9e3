"""CLI commands that talk to a running engine over the control socket.

``status``, ``stats``, ``events`` (``-f`` follows, like ``kubectl logs -f``), ``registry add|rm|ls``,
``credential set|rm`` and ``cache ls|purge|pin|unpin|verify``.  ``register(subparsers)`` adds them
to the ``appliance`` parser.  A password is read from a prompt or, with ``--password-stdin``, from
standard input: never from an argument, where ``ps`` and shell history would show it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from appliance import protocol as p
from appliance.control_client import ControlClient, ControlError, EngineUnavailable
from appliance.references import parse_reference

T = TypeVar("T")
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_REFUSED = 2


# --- plumbing ------------------------------------------------------------------------------------


def socket_path(args: argparse.Namespace) -> Path:
    """``--socket``, else the configuration's ``control_socket`` (file < env < defaults)."""
    if getattr(args, "socket", None):
        return Path(args.socket)
    from appliance.config_load import load_config
    from appliance.config_values import default_config
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


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the client's errors into one line on stderr and an exit status."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except EngineUnavailable as exc:
            print(f"appliance: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except ControlError as exc:
            print(f"appliance: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
            return EXIT_REFUSED
        except p.ProtocolError as exc:
            print(f"appliance: protocol error: {exc}", file=sys.stderr)
            return EXIT_FAILURE

    return run


def _print_json(payload: p.Payload) -> None:
    print(json.dumps(payload.to_json(), indent=2))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


# --- status and stats ----------------------------------------------------------------------------


def format_status(status: p.Status) -> str:
    lines = [
        f"appliance {status.version} (pid {status.pid}), up {human_duration(status.uptime)}",
        f"listening on  {', '.join(status.listen)}",
        f"CA            {status.ca.fingerprint_sha256} ({status.ca.days_left} days left)",
        f"config        {status.config_path or '(none)'}",
    ]
    hub = status.docker_hub_rate_limit
    if hub is not None and hub.remaining is not None:
        lines.append(
            f"Docker Hub    {hub.remaining}/{hub.limit if hub.limit is not None else '?'} pulls left"
        )
    lines.append("registries:")
    for registry in status.registries:
        detail = f" - {registry.last_error}" if registry.health is p.RegistryHealth.DEGRADED else ""
        lines.append(f"  {registry.host:<32} {registry.health:<12} {registry.requests} requests{detail}")
    return "\n".join(lines)


def format_counters(c: p.Counters) -> str:
    return (
        f"{c.requests} requests: {c.hits} hit, {c.misses} miss, {c.coalesced} coalesced, {c.stale} stale, "
        f"{c.revalidated} revalidated, {c.bypass} bypass, {c.errors} error; hit ratio {c.hit_ratio:.0%}; "
        f"{human_bytes(c.bytes_from_cache)} from cache (saved), "
        f"{human_bytes(c.bytes_from_upstream)} from upstream"
    )


def format_stats(stats: p.Stats) -> str:
    cache = stats.cache
    used = cache.bytes / cache.cap if cache.cap else 0.0
    lines = [
        f"cache   {human_bytes(cache.bytes)} of {human_bytes(cache.cap)} ({used:.0%}), "
        f"{cache.entries} entries, {cache.evicted} evicted",
        f"total   {format_counters(stats.totals)}",
        f"events  {stats.events.subscribers} subscribers, {stats.events.dropped_total} dropped",
    ]
    for registry in stats.registries:
        lines.append(f"{registry.registry}: {human_bytes(registry.cache_bytes)} cached")
        lines.append(f"    {format_counters(registry.counters)}")
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    status = _call(args, lambda c: c.status())
    _print_json(status) if args.json else print(format_status(status))
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    stats = _call(args, lambda c: c.stats())
    _print_json(stats) if args.json else print(format_stats(stats))
    return EXIT_OK


# --- events --------------------------------------------------------------------------------------


def format_event(e: p.EventRecord) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e.time))
    where = f"{e.registry}/{e.repository}" if e.repository else e.registry
    ref = f" {e.reference}" if e.reference else ""
    line = (
        f"{stamp} {e.status:<11} {e.method:<4} {e.kind:<8} {where}{ref} {e.http_status} "
        f"{human_bytes(e.bytes)} {e.duration:.3f}s"
    )
    return f"{line} {e.message}" if e.message else line


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


def _events(args: argparse.Namespace) -> int:
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


def _registry_add(args: argparse.Namespace) -> int:
    values = _registry_values(args)
    return _report(_call(args, lambda c: c.add_registry(values)))


def _registry_rm(args: argparse.Namespace) -> int:
    return _report(_call(args, lambda c: c.remove_registry(args.host)))


def _registry_ls(args: argparse.Namespace) -> int:
    view = _call(args, lambda c: c.config())
    if args.json:
        print(json.dumps([r.to_json() for r in view.registries], indent=2))
        return EXIT_OK
    for r in view.registries:
        extras = [f"aliases {', '.join(r.aliases)}"] if r.aliases else []
        if r.scheme != "https":
            extras.append(r.scheme)
        if r.insecure:
            extras.append("TLS not verified")
        if r.allow_push is not None:
            extras.append("push allowed" if r.allow_push else "push blocked")
        if r.tag_ttl is not None:
            extras.append(f"tag ttl {human_duration(r.tag_ttl)}")
        print(r.host + (f"  ({'; '.join(extras)})" if extras else ""))
    return EXIT_OK


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = getpass.getpass(f"password for {args.username} at {args.scope}: ")
    if not value:
        raise ControlError(p.ErrorBody(p.ErrorCode.BAD_REQUEST, "an empty password was given"), 400)
    return value


def _credential_set(args: argparse.Namespace) -> int:
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


def _credential_rm(args: argparse.Namespace) -> int:
    return _report(_call(args, lambda c: c.remove_credential(args.scope)))


# --- cache ---------------------------------------------------------------------------------------


def _cache_ls(args: argparse.Namespace) -> int:
    listing = _call(args, lambda c: c.images(args.registry))
    if args.json:
        _print_json(listing)
        return EXIT_OK
    for image in listing.images:
        pin = " [pinned]" if image.pinned else ""
        tags = f" tags: {', '.join(image.tags)}" if image.tags else ""
        size = f"{human_bytes(image.size)} in {image.blobs} entries"
        print(f"{image.registry}/{image.repository}  {size}{pin}{tags}")
    return EXIT_OK


def _image_target(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``IMAGE`` (``[registry/]repo``) or ``--registry``/``--repository`` -> (registry, repository)."""
    image = getattr(args, "image", None)
    if not image:
        return args.registry, getattr(args, "repository", None)
    ref = parse_reference(image)
    return ref.registry, ref.repository


def _cache_purge(args: argparse.Namespace) -> int:
    registry, repository = _image_target(args)
    request = p.PurgeRequest(registry=registry, repository=repository, digest=args.digest, all=args.all)
    request.check()
    result = _call(args, lambda c: c.purge(request))
    print(f"appliance: {result.removed} cache entries removed")
    return EXIT_OK


def _cache_pin(args: argparse.Namespace, pinned: bool) -> int:
    ref = parse_reference(args.image)
    result = _call(args, lambda c: c.pin(ref.registry, ref.repository, pinned))
    state = "pinned" if pinned else "unpinned"
    print(f"appliance: {ref.registry}/{ref.repository} {state} ({result.entries} entries now)")
    return EXIT_OK


def _cache_verify(args: argparse.Namespace) -> int:
    result = _call(args, lambda c: c.verify(args.repair))
    _print_json(result) if args.json else print(result.summary)
    return EXIT_OK if result.consistent or result.repaired else EXIT_FAILURE


def _offline_fallback(
    action: str, handler: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """Through the running engine when there is one; on the cache directory itself when not."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except EngineUnavailable:
            from appliance.cli_cache import run_offline

            return run_offline(action, args)

    return run


# --- the parser ----------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, json_flag: bool = False) -> None:
    parser.add_argument("--socket", metavar="PATH", help="control socket (default: from the configuration)")
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML file naming the control socket")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print the protocol's JSON")


def _group(subparsers: Any, name: str, help_text: str) -> Any:
    group = subparsers.add_parser(name, help=help_text, description=help_text)
    return group.add_subparsers(
        dest=f"{name}_command", metavar="SUBCOMMAND", required=True, parser_class=type(group)
    )


def _leaf(
    subparsers: Any,
    name: str,
    help_text: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    json_flag: bool = False,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, description=help_text)
    _common(parser, json_flag=json_flag)
    parser.set_defaults(handler=_guarded(handler))
    return parser


def register(subparsers: Any) -> None:
    """Add the control-socket commands to the ``appliance`` sub-command parser."""
    _leaf(subparsers, "status", "what the running engine is doing", _status, json_flag=True)
    _leaf(subparsers, "stats", "cache usage, hits and misses, bytes saved", _stats, json_flag=True)
    events = _leaf(
        subparsers, "events", "request events, like `kubectl logs` (-f follows)", _events, json_flag=True
    )
    events.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    events.add_argument(
        "--replay", type=int, default=20, metavar="N", help="recent events first (default 20)"
    )
    events.add_argument("--registry", action="append", default=[], help="only this registry (repeatable)")
    events.add_argument("--status", action="append", default=[], help="only HIT, MISS, ... (repeatable)")
    events.add_argument("--kind", action="append", default=[], help="only blob, manifest, ... (repeatable)")

    registry = _group(subparsers, "registry", "registries the appliance intercepts (edits the config file)")
    add = _leaf(registry, "add", "add a registry and apply it live", _registry_add)
    add.add_argument("host", help="host[:port] clients use")
    add.add_argument("--alias", action="append", default=[], help="another name for it (repeatable)")
    add.add_argument("--auth-host", action="append", default=[], help="its token realm host (repeatable)")
    add.add_argument("--scheme", choices=("https", "http"))
    add.add_argument("--insecure", action="store_true", help="do not verify its TLS certificate")
    add.add_argument("--ca-file", metavar="FILE", help="CA bundle for its TLS certificate")
    add.add_argument("--allow-push", action=argparse.BooleanOptionalAction, default=None)
    add.add_argument("--manifest-cache", action=argparse.BooleanOptionalAction, default=None)
    add.add_argument("--tag-ttl", metavar="TIME", help="how long tag manifests stay fresh (nginx time)")
    rm = _leaf(registry, "rm", "remove a registry and apply it live", _registry_rm)
    rm.add_argument("host")
    _leaf(registry, "ls", "list the registries in use", _registry_ls, json_flag=True)

    credential = _group(subparsers, "credential", "upstream credentials (edits the config file)")
    cset = _leaf(
        credential, "set", "set the credential for a host or host/repository prefix", _credential_set
    )
    cset.add_argument("scope", help="host[:port] or host[:port]/repository/prefix")
    cset.add_argument("username")
    cset.add_argument(
        "--store",
        choices=[s.value for s in p.SecretStoreName],
        default="toml",
        help="where the password lives: the config file (0600), the OS keyring, or a file",
    )
    cset.add_argument("--file", metavar="PATH", help="the password file, for --store file")
    cset.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    crm = _leaf(credential, "rm", "remove the credential for a scope", _credential_rm)
    crm.add_argument("scope")

    cache = _group(subparsers, "cache", "the blob and manifest cache (works on a stopped engine too)")
    ls = _leaf(cache, "ls", "cached repositories", _offline_fallback("ls", _cache_ls), json_flag=True)
    ls.add_argument("--registry")
    purge = _leaf(
        cache,
        "purge",
        "forget an image, a registry, a digest or everything",
        _offline_fallback("purge", _cache_purge),
    )
    purge.add_argument("image", nargs="?", metavar="IMAGE", help="[registry/]repository, as for docker pull")
    purge.add_argument("--registry")
    purge.add_argument("--repository")
    purge.add_argument("--digest")
    purge.add_argument("--all", action="store_true")
    for name, pinned in (("pin", True), ("unpin", False)):
        parser = _leaf(
            cache,
            name,
            f"{name} an image: pinned entries are never evicted",
            functools.partial(_cache_pin, pinned=pinned),
        )
        parser.add_argument("image", metavar="IMAGE", help="[registry/]repository, as for docker pull")
    verify = _leaf(
        cache,
        "verify",
        "re-hash every cached file and check the index",
        _offline_fallback("verify", _cache_verify),
        json_flag=True,
    )
    verify.add_argument("--repair", action="store_true")


__all__ = ["format_event", "format_stats", "format_status", "register", "socket_path"]
