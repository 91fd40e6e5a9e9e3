"""The seed's environment variables (rpardini 0.7.0) -> ``Config``, with the seed's known bugs fixed.

``apply_env`` lays the variables over a lower-precedence ``Config``.  The variables of single keys are
those of the key table (``config.keys``); the rest are read here by hand (REGISTRIES, the manifest
tiers, TUNNEL, ALLOW_CLIENTS) or by ``fleet_read`` (FLEET_*).  AUTH_REGISTRIES is parsed in
``seed_env_auth``, and ``seed_env_export`` turns a ``Config`` back into variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.config.access_toml import parse_allow_clients
from appliance.config.fleet_read import FLEET_VARS, fleet_from_env
from appliance.config.keys import KEYS, ConfigKey, Kind, env_vars, with_value
from appliance.config.model import (
    DEFAULT_EXTRA_REGISTRIES,
    Config,
    ManifestCachePolicy,
    RegistryConfig,
    normalize_host,
)
from appliance.config.seed_env_auth import (
    DEFAULT_ENTRIES_DELIMITER,
    DEFAULT_ENTRY_DELIMITER,
    SEED_DUMMY_AUTH,
    parse_auth_registries,
    registry_hosts,
    revealed,
)
from appliance.config.units import parse_size, parse_time
from appliance.config.values import (
    check_regex,
    merge_registries,
    parse_bool,
    parse_host,
    parse_listen,
    parse_tunnel,
)
from appliance.errors import ConfigError

TIER_VARS = (
    ("primary", "MANIFEST_CACHE_PRIMARY_REGEX", "MANIFEST_CACHE_PRIMARY_TIME"),
    ("secondary", "MANIFEST_CACHE_SECONDARY_REGEX", "MANIFEST_CACHE_SECONDARY_TIME"),
)
_DEFAULT_TIERS = {tier.name: tier for tier in ManifestCachePolicy().tiers}
# The variables read by hand: the ones of no single key (REGISTRIES, AUTH_REGISTRIES, TUNNEL, ...).
HAND_WRITTEN_VARS = (
    "REGISTRIES",
    "AUTH_REGISTRIES",
    "AUTH_REGISTRIES_DELIMITER",
    "AUTH_REGISTRY_DELIMITER",
    *(name for _, regex, time in TIER_VARS for name in (regex, time)),
    "PROXY_REQUEST_BUFFERING",
    "TUNNEL",
    "ALLOW_CLIENTS",
    *FLEET_VARS,
)
# Every variable read here, for docs and for tests that clear the environment.
ALL_VARS = (*HAND_WRITTEN_VARS, *env_vars())


@dataclass(frozen=True, slots=True)
class EnvResult:
    config: Config
    warnings: tuple[str, ...]


def apply_env(base: Config, environ: Mapping[str, str]) -> EnvResult:
    """``base`` with every seed (and appliance) variable present in ``environ`` applied on top."""
    warnings: list[str] = []
    config = base

    def get(name: str) -> str | None:
        return environ.get(name)

    raw_registries = get("REGISTRIES")
    if raw_registries is not None:
        registries, found = _registries_from_env(raw_registries, base.registries)
        config = replace(config, registries=registries)
        warnings.extend(found)

    auth = get("AUTH_REGISTRIES")
    if auth is not None and auth.strip() and auth.strip() != SEED_DUMMY_AUTH:
        known = registry_hosts(config.registries)
        credentials, found = parse_auth_registries(
            auth,
            get("AUTH_REGISTRIES_DELIMITER") or DEFAULT_ENTRIES_DELIMITER,
            get("AUTH_REGISTRY_DELIMITER") or DEFAULT_ENTRY_DELIMITER,
            known,
        )
        warnings.extend(found)
        if base.credentials and revealed(base.credentials) != revealed(credentials):
            warnings.append(
                f"AUTH_REGISTRIES replaces the {len(base.credentials)} credential(s) from the config file"
            )
        config = replace(config, credentials=credentials)

    tls_files = [name for name in ("TLS_CERT_FILE", "TLS_KEY_FILE") if (get(name) or "").strip()]
    if len(tls_files) == 1:
        raise ConfigError("TLS_CERT_FILE", "TLS_CERT_FILE and TLS_KEY_FILE go together")
    for key in KEYS:
        for name in key.env:
            if (raw := get(name)) is not None and raw.strip():
                config = with_value(config, key, env_value(key, raw.strip(), name))
    config = replace(config, manifest_cache=_manifest_tiers(config.manifest_cache, get))
    if (raw := get("PROXY_REQUEST_BUFFERING")) is not None:
        parse_bool(raw, "PROXY_REQUEST_BUFFERING")  # checked for the seed's sake, ignored: uploads stream
    if raw := (get("TUNNEL") or "").strip():
        config = replace(config, tunnel=parse_tunnel(raw, "TUNNEL"))
    if raw := (get("ALLOW_CLIENTS") or "").strip():
        config = replace(config, allow_clients=parse_allow_clients(raw.split(","), "ALLOW_CLIENTS"))
    fleet = fleet_from_env(config.fleet, environ)
    if fleet != config.fleet:
        config = replace(config, fleet=fleet)
    return EnvResult(config, tuple(warnings))


def _registries_from_env(
    value: str, base: tuple[RegistryConfig, ...]
) -> tuple[tuple[RegistryConfig, ...], list[str]]:
    by_host = {normalize_host(registry.host): registry for registry in base}
    entries: list[tuple[RegistryConfig, bool]] = []
    for item in value.split():
        host = parse_host(item, "REGISTRIES")
        entries.append((by_host.get(normalize_host(host), RegistryConfig(host=host)), False))
    registries, warnings = merge_registries(entries, "REGISTRIES")
    kept = {normalize_host(registry.host) for registry in registries}
    defaults = {RegistryConfig(host=host) for host in DEFAULT_EXTRA_REGISTRIES}
    dropped = [r.host for r in base[1:] if normalize_host(r.host) not in kept and r not in defaults]
    if dropped:
        warnings.append(
            f"REGISTRIES replaces the config file's registries; not intercepted: {', '.join(dropped)}"
        )
    return registries, warnings


def env_value(key: ConfigKey, raw: str, name: str) -> Any:
    """The value of ``key`` from the variable ``name`` (``raw`` stripped, not empty)."""
    match key.kind:
        case Kind.PATH:
            return Path(raw)
        case Kind.BOOL:
            return parse_bool(raw, name)
        case Kind.SIZE:
            return parse_size(raw, name)
        case Kind.TIME:
            return parse_time(raw, name)
        case Kind.WHOLE:
            assert key.parse is not None, key.dotted
            return key.parse(raw, name)
        case Kind.TEXT:
            return key.parse(raw, name) if key.parse else raw
        case Kind.LISTEN:
            return parse_listen(raw, name)
        case Kind.RESOLVE | Kind.TUNNEL_MODE | Kind.TUNNEL_HOSTS:
            raise AssertionError(f"{key.dotted} has no variable of its own")


def _manifest_tiers(policy: ManifestCachePolicy, get: Callable[[str], str | None]) -> ManifestCachePolicy:
    tiers = list(policy.tiers)
    for name, regex_var, time_var in TIER_VARS:
        regex = get(regex_var)
        time = get(time_var)
        index = next((i for i, tier in enumerate(tiers) if tier.name == name), None)
        if regex is not None and not regex.strip():
            # The seed drops a tier whose regex is empty.
            if index is not None:
                del tiers[index]
            continue
        if regex is None and (time is None or not time.strip()):
            continue
        if index is None:
            default = _DEFAULT_TIERS[name]
            index = (
                0
                if name == "primary"
                else next((i + 1 for i, tier in enumerate(tiers) if tier.name == "primary"), 0)
            )
            tiers.insert(index, default)
        tier = tiers[index]
        if regex is not None:
            tier = replace(tier, regex=check_regex(regex, regex_var))
        if time is not None and time.strip():
            tier = replace(tier, ttl=parse_time(time, time_var))
        tiers[index] = tier
    return replace(policy, tiers=tuple(tiers))
