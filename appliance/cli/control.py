"""CLI commands that talk to a running engine over the control socket.

``status``, ``stats``, ``events`` (``-f`` follows, like ``kubectl logs -f``), ``registry add|rm|ls``,
``credential set|rm`` and ``cache ls|purge|pin|unpin|verify``.  ``register(subparsers)`` adds them
to the ``appliance`` parser.  A password is read from a prompt or, with ``--password-stdin``, from
standard input: never from an argument, where ``ps`` and shell history would show it.

This module is the wiring: arguments, and the client's errors turned into exit statuses.  What
each command does is in ``cli.control_commands``, the text it prints in ``cli.control_text``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import protocol as p
from appliance.cli import control_commands as commands
from appliance.cli.control_commands import EXIT_FAILURE, EXIT_REFUSED
from appliance.control.client import ControlError, EngineUnavailable


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


def _offline_fallback(
    action: str, handler: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """Through the running engine when there is one; on the cache directory itself when not."""

    def run(args: argparse.Namespace) -> int:
        from appliance.cli.cache import run_fleet, run_offline

        if getattr(args, "fleet", False):
            return run_fleet(action, args)
        try:
            if args.cache_dir is not None and not _engine_serves(args, Path(args.cache_dir).expanduser()):
                # The engine answering on the socket has another cache: this one is not in use by it
                # (the cache directory's lock still refuses it if some other engine holds it).
                return run_offline(action, args)
            return handler(args)
        except EngineUnavailable:
            return run_offline(action, args)

    return run


def _engine_serves(args: argparse.Namespace, cache_dir: Path) -> bool:
    """Whether the engine on the control socket serves ``cache_dir`` (raises EngineUnavailable)."""
    view = commands.engine_config(args)
    try:
        return os.path.samefile(view.cache_dir, cache_dir)
    except OSError:  # either one missing: not the same directory
        return False


def _cache_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the cache directory, as given to `run --cache-dir` (used directly when the engine is stopped)",
    )


def _common(parser: argparse.ArgumentParser, *, json_flag: bool = False) -> None:
    parser.add_argument(
        "--socket",
        "--control-socket",
        dest="socket",
        metavar="PATH",
        help="control socket, as given to `run --control-socket` (default: from the configuration)",
    )
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
    _leaf(subparsers, "status", "what the running engine is doing", commands.status, json_flag=True)
    _leaf(subparsers, "stats", "cache usage, hits and misses, bytes saved", commands.stats, json_flag=True)
    events = _leaf(
        subparsers,
        "events",
        "request events, like `kubectl logs` (-f follows)",
        commands.events,
        json_flag=True,
    )
    events.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    events.add_argument(
        "--replay", type=int, default=20, metavar="N", help="recent events first (default 20)"
    )
    events.add_argument("--registry", action="append", default=[], help="only this registry (repeatable)")
    events.add_argument("--status", action="append", default=[], help="only HIT, MISS, ... (repeatable)")
    events.add_argument("--kind", action="append", default=[], help="only blob, manifest, ... (repeatable)")

    registry = _group(subparsers, "registry", "registries the appliance intercepts (edits the config file)")
    add = _leaf(registry, "add", "add a registry and apply it live", commands.registry_add)
    add.add_argument("host", help="host[:port] clients use")
    add.add_argument("--alias", action="append", default=[], help="another name for it (repeatable)")
    add.add_argument("--auth-host", action="append", default=[], help="its token realm host (repeatable)")
    add.add_argument("--scheme", choices=("https", "http"))
    add.add_argument("--insecure", action="store_true", help="do not verify its TLS certificate")
    add.add_argument("--ca-file", metavar="FILE", help="CA bundle for its TLS certificate")
    add.add_argument("--allow-push", action=argparse.BooleanOptionalAction, default=None)
    add.add_argument("--manifest-cache", action=argparse.BooleanOptionalAction, default=None)
    add.add_argument("--tag-ttl", metavar="TIME", help="how long tag manifests stay fresh (nginx time)")
    rm = _leaf(registry, "rm", "remove a registry and apply it live", commands.registry_rm)
    rm.add_argument("host")
    _leaf(registry, "ls", "list the registries in use", commands.registry_ls, json_flag=True)

    credential = _group(subparsers, "credential", "upstream credentials (edits the config file)")
    cset = _leaf(
        credential, "set", "set the credential for a host or host/repository prefix", commands.credential_set
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
    crm = _leaf(credential, "rm", "remove the credential for a scope", commands.credential_rm)
    crm.add_argument("scope")

    cache = _group(subparsers, "cache", "the blob and manifest cache (works on a stopped engine too)")
    ls = _leaf(cache, "ls", "cached repositories", _offline_fallback("ls", commands.cache_ls), json_flag=True)
    ls.add_argument("--registry")
    ls.add_argument("--fleet", action="store_true", help="the shared bucket of [fleet] instead of this cache")
    _cache_dir_flag(ls)
    purge = _leaf(
        cache,
        "purge",
        "forget an image, a registry, a digest or everything",
        _offline_fallback("purge", commands.cache_purge),
    )
    purge.add_argument("image", nargs="?", metavar="IMAGE", help="[registry/]repository, as for docker pull")
    purge.add_argument("--registry")
    purge.add_argument("--repository")
    purge.add_argument("--digest")
    purge.add_argument("--all", action="store_true")
    _cache_dir_flag(purge)
    for name, pinned in (("pin", True), ("unpin", False)):
        parser = _leaf(
            cache,
            name,
            f"{name} an image: pinned entries are never evicted",
            functools.partial(commands.cache_pin, pinned=pinned),
        )
        parser.add_argument("image", metavar="IMAGE", help="[registry/]repository, as for docker pull")
    verify = _leaf(
        cache,
        "verify",
        "re-hash every cached file and check the index",
        _offline_fallback("verify", commands.cache_verify),
        json_flag=True,
    )
    verify.add_argument("--repair", action="store_true")
    verify.add_argument(
        "--fleet", action="store_true", help="re-hash the shared bucket of [fleet] instead of this cache"
    )
    _cache_dir_flag(verify)
