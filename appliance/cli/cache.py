"""``appliance cache ...`` on the cache directory itself, and ``appliance prefetch``.

``cache ls|purge|verify`` go through the control socket when an engine runs (cli_control); these are
their fallbacks for a stopped appliance (after a crash, before a start). They take the cache
directory's lock, so they never touch files under a running engine. ``prefetch`` is the opposite: it
needs a running engine and pulls through it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.config.model import Config
from appliance.errors import ApplianceError, ConfigError

if TYPE_CHECKING:
    from appliance.cache import BlobCache


def _config(args: argparse.Namespace) -> Config:
    """The configuration with ``--cache-dir`` and ``--socket`` applied as ``run`` applies its flags."""
    from appliance.config.load import Overrides, load_config

    overrides = Overrides(
        cache_dir=getattr(args, "cache_dir", None), control_socket=getattr(args, "socket", None)
    )
    result = load_config(overrides, os.environ, args.config)
    for warning in result.warnings:
        print(f"appliance: warning: {warning}", file=sys.stderr)
    return result.config


def _open_offline(config: Config) -> BlobCache:
    from appliance.cache import BlobCache

    return BlobCache.on_disk(config.cache_dir, config.cache)


async def _offline(config: Config, action: str, args: argparse.Namespace) -> int:
    from appliance.cache.lock import CacheLock

    if getattr(args, "cache_dir", None) is not None and not config.cache_dir.is_dir():
        # Named on the command line: a typo must not become a new, empty cache.
        raise ConfigError("--cache-dir", f"{config.cache_dir} is not a directory")
    lock = CacheLock(config.cache_dir)
    try:
        lock.acquire()
    except ConfigError as exc:
        raise ConfigError(
            exc.where, f"{exc.message}; stop it first, or use the running engine's control socket"
        ) from None
    cache = _open_offline(config)
    try:
        await cache.start()
        if action == "verify":
            report = await cache.verify(repair=args.repair)
            print(f"(engine not running: checked {config.cache_dir} directly)", file=sys.stderr)
            print(report.summary())
            return 0 if report.consistent or args.repair else 1
        if action == "ls":
            for repo in await cache.list_images(args.registry):
                when = (
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(repo.last_access)) if repo.blobs else "-"
                )
                tags = ",".join(sorted({t.tag for t in repo.tags})) or "-"
                pin = " pinned" if repo.pinned else ""
                print(
                    f"{repo.registry}/{repo.repository}  tags={tags}  {len(repo.blobs)} entries  "
                    f"{repo.size} bytes  last used {when}{pin}"
                )
            return 0
        if action == "purge":
            return await _purge(config, cache, args)
        raise AssertionError(action)
    finally:
        await cache.close()
        lock.release()


async def _purge(config: Config, cache: BlobCache, args: argparse.Namespace) -> int:
    from appliance.registry.references import parse_reference

    if args.all:
        removed = await cache.purge()
    elif args.registry:
        registry = config.registry_for(args.registry)
        removed = await cache.purge(registry=registry.host if registry else args.registry)
    elif args.image:
        ref = parse_reference(args.image)
        registry = config.registry_for(ref.registry)
        removed = await cache.purge(
            registry=registry.host if registry else ref.registry, repository=ref.repository
        )
    else:
        raise ConfigError("cache purge", "name an IMAGE, --registry HOST or --all")
    print(f"purged {removed} entries")
    return 0


def _cache_command(action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return _run_cache(_offline(_config(args), action, args))

    return run


def _run_cache(work: Coroutine[Any, Any, int]) -> int:
    """Run a cache command; an engine error becomes a one-line ``cache: ...`` message (exit 2)."""
    try:
        return asyncio.run(work)
    except ApplianceError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError("cache", str(exc)) from None


def _prefetch(args: argparse.Namespace) -> int:
    from appliance.cli.prefetch import prefetch
    from appliance.registry.references import parse_reference

    config = _config(args)
    images = [parse_reference(text) for text in args.images]
    status = 0
    for image in images:
        try:
            result = asyncio.run(
                prefetch(
                    config, image, platforms=args.platform or (), progress=lambda line: print(f"  {line}")
                )
            )
        except ApplianceError as exc:
            print(f"appliance: error: {image}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{result.image}: {result.manifests} manifests, {result.blobs} blobs, {result.bytes} bytes")
    return status


async def _fleet(config: Config, action: str, args: argparse.Namespace) -> int:
    from appliance.fleet.bucket import Bucket
    from appliance.fleet.inventory import inventory, verify_bucket

    if not config.fleet.enabled:
        raise ConfigError("--fleet", "no shared store: set [fleet] store (or FLEET_STORE)")
    async with Bucket(config.fleet) as bucket:
        if action == "verify":
            report = await verify_bucket(bucket, repair=args.repair)
            if getattr(args, "json", False):
                print(json.dumps(dataclasses.asdict(report)))
            else:
                print(f"({config.fleet.store})", file=sys.stderr)
                for name in (*report.corrupt, *report.strays):
                    print(f"  {name}")
                print(report.summary())
            return 0 if report.consistent or args.repair else 1
        if action == "ls":
            found = await inventory(bucket)
            if getattr(args, "json", False):
                print(json.dumps(dataclasses.asdict(found)))
                return 0
            for repo in found.repositories:
                if args.registry and repo.registry != args.registry:
                    continue
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(repo.last_modified))
                name = f"{repo.registry}/{repo.repository}"
                print(f"{name}  {repo.objects} objects  {repo.size} bytes  stored {when}")
            print(f"{config.fleet.store}: {found.summary()}")
            return 0
    raise ConfigError("--fleet", f"cache {action} has no --fleet form")


def run_fleet(action: str, args: argparse.Namespace) -> int:
    """``cache ls|verify --fleet``: on the shared bucket itself (no engine needed: it is shared)."""
    return _run_cache(_fleet(_config(args), action, args))


def run_offline(action: str, args: argparse.Namespace) -> int:
    """``cache ls|purge|verify`` on the cache directory of a stopped appliance."""
    return _cache_command(action)(args)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    pre = subparsers.add_parser("prefetch", help="warm the cache: pull images through the running engine")
    pre.add_argument("images", nargs="+", metavar="IMAGE")
    pre.add_argument(
        "--platform", action="append", metavar="OS/ARCH", help="only these platforms of an index"
    )
    pre.add_argument("--config", metavar="FILE", type=Path, help="TOML configuration file")
    pre.set_defaults(handler=_prefetch)
