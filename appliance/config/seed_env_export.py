"""A ``Config`` -> the seed's environment variables, as ``KEY=value`` lines for a shell or an env-file.

The inverse of ``seed_env.apply_env`` for everything the variables can express; the rest is reported
as warnings.  Each key of the key table (``config.keys``) says whether its variable is written always
(the seed's) or when changed, or why it has none.  AUTH_REGISTRIES gets delimiters that no credential
collides with (``seed_env_auth``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from appliance.config.fleet_read import fleet_env_pairs
from appliance.config.keys import KEYS, ConfigKey, Export, Kind, get
from appliance.config.model import Config, RegistryConfig, docker_hub
from appliance.config.seed_env import TIER_VARS
from appliance.config.seed_env_auth import (
    DEFAULT_ENTRIES_DELIMITER,
    DEFAULT_ENTRY_DELIMITER,
    encode_auth_registries,
    registry_hosts,
)
from appliance.config.units import format_size, format_time
from appliance.config.values import format_tunnel
from appliance.errors import ConfigError


def export_env(config: Config) -> tuple[list[tuple[str, str]], list[str]]:
    """``config`` -> seed variables as (name, value) pairs, plus what env vars cannot express."""
    warnings: list[str] = []
    pairs: list[tuple[str, str]] = []
    defaults = Config()

    extras = config.registries[1:]
    pairs.append(("REGISTRIES", " ".join(registry.host for registry in extras)))
    if config.registries and config.registries[0] != docker_hub():
        warnings.append("Docker Hub's per-registry settings have no env var equivalent")
    for registry in extras:
        if registry != RegistryConfig(host=registry.host):
            warnings.append(
                f"registry {registry.host}: settings other than the host have no env var equivalent"
            )

    value, entries_delimiter, entry_delimiter = encode_auth_registries(
        config.credentials, registry_hosts(config.registries)
    )
    if (entries_delimiter, entry_delimiter) != (DEFAULT_ENTRIES_DELIMITER, DEFAULT_ENTRY_DELIMITER):
        pairs.append(("AUTH_REGISTRIES_DELIMITER", entries_delimiter))
        pairs.append(("AUTH_REGISTRY_DELIMITER", entry_delimiter))
    pairs.append(("AUTH_REGISTRIES", value))

    for key in KEYS:
        current = get(config, key)
        changed = current != get(defaults, key)
        if key.env and (key.export is Export.ALWAYS or changed):
            pairs.append((key.env[0], env_text(key, current)))
        elif changed and key.export is Export.NONE:
            warnings.append(f"{key.dotted} has no env var equivalent")
        elif changed and key.export is Export.FLAG:
            warnings.append(f"{key.dotted} has no env var equivalent (use the command-line flag)")

    policy = config.manifest_cache
    names = [tier.name for tier in policy.tiers]
    if names not in (["primary", "secondary"], ["primary"], ["secondary"], []):
        warnings.append(
            f"manifest cache tiers {names} cannot be expressed as env vars; exported only primary/secondary"
        )
    for name, regex_var, time_var in TIER_VARS:
        tier = next((t for t in policy.tiers if t.name == name), None)
        pairs.append((regex_var, tier.regex if tier else ""))
        if tier is not None:
            pairs.append((time_var, format_time(tier.ttl)))
    if config.tunnel != defaults.tunnel:
        pairs.append(("TUNNEL", format_tunnel(config.tunnel)))
    if config.allow_clients is not None:
        pairs.append(("ALLOW_CLIENTS", ",".join(str(network) for network in config.allow_clients)))
    pairs.extend(fleet_env_pairs(config.fleet))
    if config.access != defaults.access:
        warnings.append("[access] (users, tokens, ACL rules) has no env var equivalent")
    return pairs, warnings


def env_text(key: ConfigKey, value: Any) -> str:
    """A key's model value as its variable spells it."""
    match key.kind:
        case Kind.BOOL:
            return "true" if value else "false"
        case Kind.SIZE:
            return format_size(value)
        case Kind.TIME:
            return format_time(value)
        case Kind.LISTEN:
            host, port = value
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        case Kind.PATH | Kind.TEXT | Kind.WHOLE:
            return str(value)
        case Kind.RESOLVE | Kind.TUNNEL_MODE | Kind.TUNNEL_HOSTS:
            raise AssertionError(f"{key.dotted} has no variable of its own")


def format_env_lines(pairs: Iterable[tuple[str, str]], style: str = "shell") -> str:
    """``KEY=value`` lines.

    ``shell``: values quoted for a POSIX shell where needed, so a line pastes after ``docker run -e``
    or into a script.  ``env-file``: raw values for ``docker run --env-file`` (which cannot hold a
    newline, so a value with one is an error).
    """
    lines = []
    for name, value in pairs:
        if style == "env-file":
            if "\n" in value or "\r" in value:
                raise ConfigError(
                    name, "value contains a newline, which an env-file cannot hold; use --format shell"
                )
            lines.append(f"{name}={value}")
        else:
            lines.append(f"{name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"
