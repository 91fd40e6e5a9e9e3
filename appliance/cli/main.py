"""The ``appliance`` command line: ``run``, ``config import-env|export-env|check``, ``ca show``.

Bad input of any kind (flags, env vars, TOML) ends in one line on stderr and exit status 2, never a
traceback.  Commands are listed in ``COMMANDS``; a later subcommand (status, stats, events, registry,
credential, cache, prefetch, setup, tui) adds a ``Command`` there and nothing else changes.
Heavy modules (the engine, the CA) are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO

from appliance import __version__
from appliance.access.summary import describe as describe_access
from appliance.config.credentials import describe_store
from appliance.config.model import Config, ManifestCachePolicy, TunnelMode
from appliance.config.units import format_size, format_time
from appliance.config.values import default_config, format_resolve, mask_url
from appliance.errors import ConfigError
from appliance.upstream.challenges import serves_a_registry

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """argparse found bad flags; reported as one line like a ConfigError."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: ``path`` is its words (``("config", "check")``)."""

    path: tuple[str, ...]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


# --- shared helpers ------------------------------------------------------------------------------


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML configuration file")


def _load(args: argparse.Namespace, overrides: object = None) -> Config:
    from appliance.config.load import Overrides, load_config

    result = load_config(overrides if isinstance(overrides, Overrides) else None, os.environ, args.config)
    for warning in result.warnings:
        print(f"appliance: warning: {warning}", file=sys.stderr)
    return result.config


def summary(config: Config) -> str:
    """A readable account of ``config`` with every secret masked."""
    lines = [
        f"config file:    {config.config_path or '(none)'}",
        f"listen:         {config.listen_host}:{config.listen_port}",
        f"cache:          {config.cache_dir} (max {format_size(config.cache.max_size)}, "
        f"inactive {format_time(config.cache.inactive)}, "
        f"min free disk {format_size(config.cache.min_free_disk)})",
        f"CA:             {config.ca_cert_path} (key {config.ca_key_path})",
        f"control socket: {config.control_socket}",
        f"registries ({len(config.registries)}):",
    ]
    for registry in config.registries:
        extras = []
        if registry.aliases:
            extras.append(f"aliases {', '.join(registry.aliases)}")
        if registry.auth_hosts:
            extras.append(f"auth {', '.join(registry.auth_hosts)}")
        if registry.scheme.value != "https":
            extras.append(registry.scheme.value)
        if registry.insecure:
            extras.append("TLS not verified")
        if registry.ca_file:
            extras.append(f"CA {registry.ca_file}")
        if registry.allow_push is not None:
            extras.append("push allowed" if registry.allow_push else "push blocked")
        if registry.manifest_cache is not None:
            extras.append("tag cache on" if registry.manifest_cache else "tag cache off")
        if registry.tag_ttl is not None:
            extras.append(f"tag ttl {format_time(registry.tag_ttl)}")
        lines.append(f"  {registry.host}" + (f" ({'; '.join(extras)})" if extras else ""))
    lines.append(f"credentials ({len(config.credentials)}):")
    for credential in config.credentials:
        token_server = not serves_a_registry(credential, config.registries)
        lines.append(
            f"  {credential.scope}: user {credential.username!r}, password ******** "
            f"(from {describe_store(credential)})"
            + (": no registry has this name; sent only with token requests to it" if token_server else "")
        )
    lines.append(f"manifest cache: {_policy(config.manifest_cache)}")
    lines.append(
        f"push:           {'allowed' if config.allow_push else 'blocked'}; upstream TLS "
        f"{'verified' if config.verify_ssl else 'NOT verified'}; "
        f"IPv6 {'off' if config.disable_ipv6 else 'on'}"
    )
    timeouts = config.timeouts
    lines.append(
        "timeouts:       "
        + ", ".join(f"{name} {format_time(getattr(timeouts, name))}" for name in timeouts.__slots__)
    )
    tunnel = str(config.tunnel.mode)
    if config.tunnel.mode is TunnelMode.LIST:
        tunnel += f": {' '.join(config.tunnel.hosts)}"
    lines.append(f"tunnel:         {tunnel}")
    lines.append(f"clients:        {describe_access(config)}")
    if config.upstream_proxy:
        lines.append(f"upstream proxy: {mask_url(config.upstream_proxy)}")
    if config.upstream_ca:
        lines.append(f"upstream CA:    {config.upstream_ca}")
    for entry in config.resolve:
        lines.append(f"resolve:        {format_resolve(entry)}")
    lines.append(f"log:            {config.log_format}{', debug' if config.debug else ''}")
    return "\n".join(lines)


def _policy(policy: ManifestCachePolicy) -> str:
    if not policy.enabled:
        return "tags not cached (digests always are)"
    tiers = [f"{tier.name} /{tier.regex}/ {format_time(tier.ttl)}" for tier in policy.tiers]
    return "; ".join([*tiers, f"other tags {format_time(policy.default_ttl)}"])


# --- run -----------------------------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_flag(parser)
    parser.add_argument("--listen", metavar="HOST:PORT", help="proxy address (default 0.0.0.0:3128)")
    parser.add_argument("--cache-dir", metavar="DIR")
    parser.add_argument("--ca-dir", metavar="DIR")
    parser.add_argument("--control-socket", metavar="PATH")
    parser.add_argument(
        "--resolve",
        metavar="HOST[:PORT]=ADDR:PORT",
        action="append",
        default=[],
        help="send upstream traffic for HOST to ADDR:PORT, keeping HOST for SNI and Host (repeatable)",
    )
    parser.add_argument("--upstream-ca", metavar="FILE", help="extra CA bundle for upstream TLS")
    parser.add_argument("--tunnel", metavar="MODE", help="default, all, none, or hosts to allow")
    parser.add_argument("--log-format", metavar="FORMAT", help="text or json")


def _run(args: argparse.Namespace) -> int:
    from appliance.config.load import Overrides

    overrides = Overrides(
        listen=args.listen,
        cache_dir=args.cache_dir,
        ca_dir=args.ca_dir,
        control_socket=args.control_socket,
        resolve=tuple(args.resolve),
        upstream_ca=args.upstream_ca,
        tunnel=args.tunnel,
        log_format=args.log_format,
    )
    config = _load(args, overrides)
    from appliance import runner
    from appliance.control.edits import ConfigSource

    # A hot reload rebuilds the configuration from the same file, environment and flags.
    source = ConfigSource(overrides=overrides, environ=os.environ, config_path=args.config)
    result: int = runner.run(config, source)
    return result


# --- config --------------------------------------------------------------------------------------


def _import_env_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="FILE", type=Path, help="write here (default: stdout)")
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")


def _import_env(args: argparse.Namespace) -> int:
    import tomlkit

    from appliance.config.seed_env import apply_env
    from appliance.config.toml_edit import write_document
    from appliance.config.toml_render import render_config

    defaults = default_config(os.environ)
    result = apply_env(defaults, os.environ)
    for warning in result.warnings:
        print(f"appliance: warning: {warning}", file=sys.stderr)
    document = render_config(
        result.config, defaults, "registry-appliance configuration, converted from environment variables"
    )
    if args.output is None:
        sys.stdout.write(tomlkit.dumps(document))
        return EXIT_OK
    if args.output.exists() and not args.force:
        raise ConfigError(str(args.output), "file exists (use --force to overwrite)")
    try:
        write_document(args.output, document)
    except OSError as exc:
        raise ConfigError(str(args.output), f"cannot write: {exc.strerror or type(exc).__name__}") from None
    print(f"appliance: wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _export_env_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_flag(parser)
    parser.add_argument(
        "--format",
        choices=("shell", "env-file"),
        default="shell",
        help="shell: values quoted for pasting after `docker run -e` (default); env-file: for --env-file",
    )


def _export_env(args: argparse.Namespace) -> int:
    from appliance.config.seed_env_export import export_env, format_env_lines

    config = _load(args)
    pairs, warnings = export_env(config)
    for warning in warnings:
        print(f"appliance: warning: {warning}", file=sys.stderr)
    sys.stdout.write(format_env_lines(pairs, args.format))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    config = _load(args)
    print(summary(config))
    print("configuration OK")
    return EXIT_OK


# --- ca ------------------------------------------------------------------------------------------


def _ca_show(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        from appliance.front.ca import describe_ca
    except ModuleNotFoundError as exc:
        if exc.name != "appliance.front.ca":
            raise
        print("appliance: the CA module is not built yet", file=sys.stderr)
        return EXIT_FAILURE
    print(describe_ca(config))
    return EXIT_OK


COMMANDS: list[Command] = [
    Command(("run",), "run the caching proxy", _run_arguments, _run),
    Command(
        ("config", "import-env"),
        "environment variables -> a commented TOML file",
        _import_env_arguments,
        _import_env,
    ),
    Command(
        ("config", "export-env"),
        "the configuration -> the seed's KEY=value lines",
        _export_env_arguments,
        _export_env,
    ),
    Command(("config", "check"), "validate and summarise (secrets masked)", _add_config_flag, _check),
    Command(("ca", "show"), "describe the interception CA", _add_config_flag, _ca_show),
]
# Modules that add their own subcommands through ``register(subparsers)``.
EXTENSIONS = (
    "appliance.cli.setup",
    "appliance.cli.control",
    "appliance.cli.cache",
    "appliance.cli.tui",
    "appliance.cli.access",
    "appliance.cli.client_cert",
)
_GROUP_HELP = {"config": "convert and check the configuration", "ca": "the interception CA"}


def build_parser(commands: Sequence[Command] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    parser = _Parser(prog="appliance", description="Caching proxy appliance for container registries.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    groups: dict[str, argparse._SubParsersAction[_Parser]] = {}
    for command in commands:
        if len(command.path) == 1:
            sub = top.add_parser(command.path[0], help=command.help, description=command.help)
        else:
            group_name, name = command.path
            if group_name not in groups:
                group = top.add_parser(group_name, help=_GROUP_HELP.get(group_name))
                groups[group_name] = group.add_subparsers(
                    dest="subcommand", metavar="SUBCOMMAND", required=True, parser_class=_Parser
                )
            sub = groups[group_name].add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.handler)
    for name in EXTENSIONS:
        importlib.import_module(name).register(top)
    return parser


def _fail(message: str, stream: TextIO) -> int:
    # One line, whatever the message contains.
    print(f"appliance: error: {' '.join(message.splitlines())}", file=stream)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UsageError as exc:
        return _fail(str(exc), sys.stderr)
    except ConfigError as exc:
        return _fail(str(exc), sys.stderr)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
