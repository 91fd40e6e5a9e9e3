"""The seed's environment variables (rpardini 0.7.0) -> ``Config``, with the seed's known bugs fixed.

``apply_env`` lays the variables over a lower-precedence ``Config``.  This module holds the table of
variables; AUTH_REGISTRIES is parsed in ``seed_env_auth`` and ``seed_env_export`` turns a ``Config``
back into variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from appliance.config.access_toml import parse_allow_clients
from appliance.config.model import (
    DEFAULT_EXTRA_REGISTRIES,
    Config,
    ManifestCachePolicy,
    RegistryConfig,
    Timeouts,
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
    parse_event_queue,
    parse_host,
    parse_listen,
    parse_log_format,
    parse_pull_ahead,
    parse_tunnel,
    parse_upstream_proxy,
)
from appliance.errors import ConfigError

TIMEOUT_VARS: dict[str, str] = {f"{field.name.upper()}_TIMEOUT": field.name for field in fields(Timeouts)}
TIER_VARS = (
    ("primary", "MANIFEST_CACHE_PRIMARY_REGEX", "MANIFEST_CACHE_PRIMARY_TIME"),
    ("secondary", "MANIFEST_CACHE_SECONDARY_REGEX", "MANIFEST_CACHE_SECONDARY_TIME"),
)
_DEFAULT_TIERS = {tier.name: tier for tier in ManifestCachePolicy().tiers}
# Every variable read here, for docs and for tests that clear the environment.
SEED_VARS = (
    "REGISTRIES",
    "AUTH_REGISTRIES",
    "AUTH_REGISTRIES_DELIMITER",
    "AUTH_REGISTRY_DELIMITER",
    "CACHE_MAX_SIZE",
    "CACHE_INACTIVE",
    "ENABLE_MANIFEST_CACHE",
    *(name for _, regex, time in TIER_VARS for name in (regex, time)),
    "MANIFEST_CACHE_DEFAULT_TIME",
    "ALLOW_PUSH",
    "VERIFY_SSL",
    "DISABLE_IPV6",
    *TIMEOUT_VARS,
    "CA_KEY_FILE",
    "CA_CRT_FILE",
    "DEBUG",
)
EXTRA_VARS = (
    "PROXY_REQUEST_BUFFERING",
    "UPSTREAM_PROXY",
    "APPLIANCE_UPSTREAM_PROXY",
    "TUNNEL",
    "LISTEN",
    "LOG_FORMAT",
    "APPLIANCE_CONTROL_GROUP",
    "APPLIANCE_EVENT_QUEUE",
    "APPLIANCE_PULL_AHEAD",
    "ALLOW_CLIENTS",
    "TLS_LISTEN",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
)
ALL_VARS = (*SEED_VARS, *EXTRA_VARS)


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

    def flag(name: str, current: bool) -> bool:
        raw = get(name)
        parsed = None if raw is None else parse_bool(raw, name)
        return current if parsed is None else parsed

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

    cache = config.cache
    if (raw := get("CACHE_MAX_SIZE")) is not None and raw.strip():
        cache = replace(cache, max_size=parse_size(raw, "CACHE_MAX_SIZE"))
    if (raw := get("CACHE_INACTIVE")) is not None and raw.strip():
        cache = replace(cache, inactive=parse_time(raw, "CACHE_INACTIVE"))
    config = replace(config, cache=cache, manifest_cache=_manifest_policy(config.manifest_cache, get, flag))

    timeouts = config.timeouts
    for name, field_name in TIMEOUT_VARS.items():
        if (raw := get(name)) is not None and raw.strip():
            timeouts = replace(timeouts, **{field_name: parse_time(raw, name)})

    config = replace(
        config,
        timeouts=timeouts,
        allow_push=flag("ALLOW_PUSH", config.allow_push),
        verify_ssl=flag("VERIFY_SSL", config.verify_ssl),
        disable_ipv6=flag("DISABLE_IPV6", config.disable_ipv6),
        debug=flag("DEBUG", config.debug),
    )
    # Accepted for compatibility and ignored: uploads always stream.
    flag("PROXY_REQUEST_BUFFERING", True)

    if raw := (get("CA_KEY_FILE") or "").strip():
        config = replace(config, ca_key_file=Path(raw))
    if raw := (get("CA_CRT_FILE") or "").strip():
        config = replace(config, ca_cert_file=Path(raw))
    for name in ("UPSTREAM_PROXY", "APPLIANCE_UPSTREAM_PROXY"):
        if raw := (get(name) or "").strip():
            config = replace(config, upstream_proxy=parse_upstream_proxy(raw, name))
    if raw := (get("TUNNEL") or "").strip():
        config = replace(config, tunnel=parse_tunnel(raw, "TUNNEL"))
    if raw := (get("LISTEN") or "").strip():
        host, port = parse_listen(raw, "LISTEN")
        config = replace(config, listen_host=host, listen_port=port)
    if raw := (get("LOG_FORMAT") or "").strip():
        config = replace(config, log_format=parse_log_format(raw, "LOG_FORMAT"))
    if raw := (get("APPLIANCE_CONTROL_GROUP") or "").strip():
        config = replace(config, control_group=raw)
    if raw := (get("APPLIANCE_EVENT_QUEUE") or "").strip():
        config = replace(config, event_queue=parse_event_queue(raw, "APPLIANCE_EVENT_QUEUE"))
    if raw := (get("APPLIANCE_PULL_AHEAD") or "").strip():
        pull_ahead = parse_pull_ahead(raw, "APPLIANCE_PULL_AHEAD")
        config = replace(config, cache=replace(config.cache, pull_ahead=pull_ahead))
    if raw := (get("ALLOW_CLIENTS") or "").strip():
        config = replace(config, allow_clients=parse_allow_clients(raw.split(","), "ALLOW_CLIENTS"))
    if raw := (get("TLS_LISTEN") or "").strip():
        config = replace(config, tls_listen=parse_listen(raw, "TLS_LISTEN"))
    tls_files = {name: (get(name) or "").strip() for name in ("TLS_CERT_FILE", "TLS_KEY_FILE")}
    if any(tls_files.values()):
        if not all(tls_files.values()):
            raise ConfigError("TLS_CERT_FILE", "TLS_CERT_FILE and TLS_KEY_FILE go together")
        config = replace(
            config,
            tls_cert_file=Path(tls_files["TLS_CERT_FILE"]),
            tls_key_file=Path(tls_files["TLS_KEY_FILE"]),
        )
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


def _manifest_policy(
    policy: ManifestCachePolicy,
    get: Callable[[str], str | None],
    flag: Callable[[str, bool], bool],
) -> ManifestCachePolicy:
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
    default_ttl = policy.default_ttl
    if (raw := get("MANIFEST_CACHE_DEFAULT_TIME")) is not None and raw.strip():
        default_ttl = parse_time(raw, "MANIFEST_CACHE_DEFAULT_TIME")
    return ManifestCachePolicy(
        enabled=flag("ENABLE_MANIFEST_CACHE", policy.enabled), tiers=tuple(tiers), default_ttl=default_ttl
    )
