"""Build the one ``Config``: built-in defaults < TOML file < seed env vars < command-line flags.

Each source is a function ``Config -> Config`` applied in that order.  A setting given by a higher
source replaces the lower one's value whole (REGISTRIES replaces the file's registries, a non-empty
AUTH_REGISTRIES replaces the file's credentials).  Warnings (duplicates merged, settings dropped) are
collected and returned, for the CLI to print on stderr.

The TOML file is ``--config``, else ``$APPLIANCE_CONFIG``, else
``$XDG_CONFIG_HOME/registry-appliance/config.toml`` (``~/.config/...``) when that file exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from appliance.config.fleet_read import with_default_replica_id
from appliance.config.model import Config
from appliance.config.seed_env import apply_env
from appliance.config.toml_read import load_file
from appliance.config.values import (
    default_config,
    default_config_path,
    parse_listen,
    parse_log_format,
    parse_resolve,
    parse_tunnel,
)
from appliance.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line flags (highest precedence); ``None``/empty means "not given"."""

    listen: str | None = None
    cache_dir: str | None = None
    ca_dir: str | None = None
    control_socket: str | None = None
    resolve: Sequence[str] = ()
    upstream_ca: str | None = None
    tunnel: str | None = None
    log_format: str | None = None


@dataclass(frozen=True, slots=True)
class LoadResult:
    config: Config
    warnings: tuple[str, ...]


def find_config_path(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return explicit
    if environ.get("APPLIANCE_CONFIG"):
        return Path(environ["APPLIANCE_CONFIG"])
    implicit = default_config_path(environ)
    return implicit if implicit.is_file() else None


def load_config(
    overrides: Overrides | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    *,
    use_env: bool = True,
) -> LoadResult:
    """The configuration from every source.  ``use_env=False`` ignores the seed env vars (but still
    uses ``environ`` for default paths and ``password_env`` credentials)."""
    env = os.environ if environ is None else environ
    warnings: list[str] = []
    config = default_config(env)
    path = find_config_path(config_path, env)
    if path is not None:
        from_file = load_file(path, config, env)
        config = from_file.config
        warnings.extend(from_file.warnings)
    if use_env:
        from_env = apply_env(config, env)
        config = from_env.config
        warnings.extend(from_env.warnings)
    config = apply_overrides(config, overrides or Overrides())
    # Checked once every source is in: the file may leave the token or the key to the environment.
    fleet = with_default_replica_id(config.fleet).checked()
    if fleet != config.fleet:
        config = replace(config, fleet=fleet)
    return LoadResult(config, tuple(warnings))


def apply_overrides(config: Config, flags: Overrides) -> Config:
    changes: dict[str, object] = {}
    if flags.listen is not None:
        changes["listen_host"], changes["listen_port"] = parse_listen(flags.listen, "--listen")
    for name in ("cache_dir", "ca_dir", "control_socket", "upstream_ca"):
        value = getattr(flags, name)
        if value is not None:
            if not value.strip():
                raise ConfigError(f"--{name.replace('_', '-')}", "empty path")
            changes[name] = Path(value).expanduser()
    if flags.resolve:
        changes["resolve"] = tuple(parse_resolve(item, "--resolve") for item in flags.resolve)
    if flags.tunnel is not None:
        changes["tunnel"] = parse_tunnel(flags.tunnel, "--tunnel")
    if flags.log_format is not None:
        changes["log_format"] = parse_log_format(flags.log_format, "--log-format")
    return replace(config, **changes) if changes else config  # type: ignore[arg-type]
