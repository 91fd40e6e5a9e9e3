"""Reading the TOML file into a ``Config``: every key validated, laid over lower-precedence defaults.

Part of the ``config_file*`` modules, the only code that reads or writes the TOML file.  Unknown keys
get a "did you mean" hint; relative paths in the file are relative to the file's directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from appliance.config.access_toml import access_changes
from appliance.config.credentials import CREDENTIAL_KEYS, credential_from_table
from appliance.config.model import (
    CacheConfig,
    Config,
    Credential,
    Limits,
    ManifestCachePolicy,
    ManifestTier,
    RegistryConfig,
    Scheme,
    TunnelMode,
    TunnelPolicy,
)
from appliance.config.toml_keys import (
    CACHE_KEYS,
    LIMIT_KEYS,
    MANIFEST_KEYS,
    REGISTRY_KEYS,
    TIER_KEYS,
    TIMEOUT_KEYS,
    TOP_KEYS,
    TUNNEL_KEYS,
    TableReader,
)
from appliance.config.units import parse_size, parse_time
from appliance.config.values import (
    check_regex,
    merge_registries,
    parse_event_queue,
    parse_host,
    parse_listen,
    parse_log_format,
    parse_pull_ahead,
    parse_resolve,
    parse_tunnel_hosts,
    parse_tunnel_mode,
    parse_upstream_proxy,
)
from appliance.errors import ConfigError


@dataclass(frozen=True, slots=True)
class FileResult:
    config: Config
    warnings: tuple[str, ...]


def read_document(path: Path) -> tomlkit.TOMLDocument:
    """Parse ``path``; a syntax error names the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(str(path), f"cannot read config file: {reason}") from None
    return parse_text(text, str(path))


def parse_text(text: str, source: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        message = str(exc).split(" at line ")[0]
        raise ConfigError(f"{source}:{exc.line}:{exc.col}", f"TOML syntax error: {message}") from None


def config_from_document(
    document: Mapping[str, Any],
    base: Config,
    environ: Mapping[str, str],
    path: Path | None = None,
) -> FileResult:
    """The TOML ``document`` laid over ``base``.  Secrets are read from wherever they live."""
    data = document.unwrap() if isinstance(document, tomlkit.TOMLDocument) else dict(document)
    source = str(path) if path else "config"
    base_dir = path.parent if path else None
    reader = TableReader(source, base_dir)
    warnings: list[str] = []
    reader.check_keys(data, TOP_KEYS, "")
    config = base
    changes: dict[str, Any] = {}

    if "listen" in data:
        host, port = parse_listen(reader.string(data, "listen"), reader.at("listen"))
        changes.update(listen_host=host, listen_port=port)
    for key in ("cache_dir", "ca_dir", "control_socket"):
        if key in data:
            changes[key] = reader.path(data, key)
    if "control_group" in data:
        changes["control_group"] = reader.string(data, "control_group").strip() or None
    if "event_queue" in data:
        changes["event_queue"] = parse_event_queue(data["event_queue"], reader.at("event_queue"))
    if "tls_listen" in data:
        changes["tls_listen"] = parse_listen(reader.string(data, "tls_listen"), reader.at("tls_listen"))
    for key in ("ca_cert_file", "ca_key_file", "upstream_ca", "tls_cert_file", "tls_key_file"):
        if key in data:
            changes[key] = reader.path(data, key)
    for key in ("allow_push", "verify_ssl", "disable_ipv6", "debug"):
        if key in data:
            changes[key] = reader.boolean(data, key)
    if "upstream_proxy" in data:
        changes["upstream_proxy"] = parse_upstream_proxy(
            reader.string(data, "upstream_proxy"), reader.at("upstream_proxy")
        )
    if "log_format" in data:
        changes["log_format"] = parse_log_format(reader.string(data, "log_format"), reader.at("log_format"))
    if "resolve" in data:
        changes["resolve"] = tuple(
            parse_resolve(item, reader.at(f"resolve[{i}]"))
            for i, item in enumerate(reader.string_list(data, "resolve"))
        )
    if "cache" in data:
        changes["cache"] = _cache(reader, reader.table(data, "cache"), config.cache)
    if "manifest_cache" in data:
        changes["manifest_cache"] = _manifest_cache(
            reader, reader.table(data, "manifest_cache"), config.manifest_cache
        )
    if "timeouts" in data:
        table = reader.table(data, "timeouts")
        reader.check_keys(table, TIMEOUT_KEYS, "timeouts.")
        values = {
            k: parse_time(reader.number_or_str(table, k, "timeouts."), reader.at(f"timeouts.{k}"))
            for k in table
        }
        changes["timeouts"] = replace(config.timeouts, **values)
    if "tunnel" in data:
        changes["tunnel"] = _tunnel(reader, reader.table(data, "tunnel"), config.tunnel)
    if "limits" in data:
        changes["limits"] = _limits(reader, reader.table(data, "limits"), config.limits)
    if "registries" in data:
        registries, found = _registries(reader, data["registries"])
        changes["registries"] = registries
        warnings.extend(found)
    if "credentials" in data:
        changes["credentials"] = _credentials(reader, data["credentials"], environ)
    changes.update(access_changes(reader, data))
    if ("tls_cert_file" in changes) != ("tls_key_file" in changes):
        raise ConfigError(reader.at("tls_cert_file"), "tls_cert_file and tls_key_file go together")
    config = replace(config, config_path=path, **changes)
    return FileResult(config, tuple(warnings))


def load_file(path: Path, base: Config, environ: Mapping[str, str]) -> FileResult:
    return config_from_document(read_document(path), base, environ, path)


def _cache(reader: TableReader, table: dict[str, Any], current: CacheConfig) -> CacheConfig:
    reader.check_keys(table, CACHE_KEYS, "cache.")
    values: dict[str, Any] = {}
    for key in ("max_size", "min_free_disk"):
        if key in table:
            raw = reader.number_or_str(table, key, "cache.")
            if isinstance(raw, float):
                raise ConfigError(reader.at(f"cache.{key}"), f"invalid size {raw!r}: expected whole bytes")
            values[key] = parse_size(raw, reader.at(f"cache.{key}"))
    if "inactive" in table:
        values["inactive"] = parse_time(
            reader.number_or_str(table, "inactive", "cache."), reader.at("cache.inactive")
        )
    if "pull_ahead" in table:
        values["pull_ahead"] = parse_pull_ahead(table["pull_ahead"], reader.at("cache.pull_ahead"))
    return replace(current, **values)


def _manifest_cache(
    reader: TableReader, table: dict[str, Any], current: ManifestCachePolicy
) -> ManifestCachePolicy:
    reader.check_keys(table, MANIFEST_KEYS, "manifest_cache.")
    policy = current
    if "enabled" in table:
        policy = replace(policy, enabled=reader.boolean(table, "enabled", "manifest_cache."))
    if "default_ttl" in table:
        ttl = reader.number_or_str(table, "default_ttl", "manifest_cache.")
        policy = replace(policy, default_ttl=parse_time(ttl, reader.at("manifest_cache.default_ttl")))
    if "tiers" in table:
        tiers = []
        names: set[str] = set()
        for i, tier in enumerate(reader.tables(table["tiers"], "manifest_cache.tiers")):
            prefix = f"manifest_cache.tiers[{i}]."
            reader.check_keys(tier, TIER_KEYS, prefix)
            for key in TIER_KEYS:
                if key not in tier:
                    raise ConfigError(reader.at(prefix + key), "required")
            name = reader.string(tier, "name", prefix)
            if not name or name in names:
                raise ConfigError(
                    reader.at(prefix + "name"), f"tier names must be unique and non-empty: {name!r}"
                )
            names.add(name)
            regex = check_regex(reader.string(tier, "regex", prefix), reader.at(prefix + "regex"))
            ttl = parse_time(reader.number_or_str(tier, "ttl", prefix), reader.at(prefix + "ttl"))
            tiers.append(ManifestTier(name=name, regex=regex, ttl=ttl))
        policy = replace(policy, tiers=tuple(tiers))
    return policy


def _tunnel(reader: TableReader, table: dict[str, Any], current: TunnelPolicy) -> TunnelPolicy:
    reader.check_keys(table, TUNNEL_KEYS, "tunnel.")
    mode = current.mode
    hosts = current.hosts
    if "mode" in table:
        mode = parse_tunnel_mode(reader.string(table, "mode", "tunnel."), reader.at("tunnel.mode"))
    if "hosts" in table:
        hosts = parse_tunnel_hosts(reader.string_list(table, "hosts", "tunnel."), reader.at("tunnel.hosts"))
    if mode is TunnelMode.LIST and not hosts:
        raise ConfigError(reader.at("tunnel.hosts"), 'mode = "list" needs at least one host')
    return TunnelPolicy(mode=mode, hosts=hosts if mode is TunnelMode.LIST else ())


def _limits(reader: TableReader, table: dict[str, Any], current: Limits) -> Limits:
    reader.check_keys(table, LIMIT_KEYS, "limits.")
    values: dict[str, int] = {}
    for key in LIMIT_KEYS:
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
                raise ConfigError(
                    reader.at(f"limits.{key}"), f"expected a whole number from 1 to 1000000, not {value!r}"
                )
            values[key] = value
    limits = replace(current, **values)
    if limits.connections_per_source > limits.max_connections:
        raise ConfigError(
            reader.at("limits.connections_per_source"),
            f"{limits.connections_per_source} is more than max_connections ({limits.max_connections})",
        )
    return limits


def _registry(reader: TableReader, table: dict[str, Any], prefix: str) -> RegistryConfig:
    reader.check_keys(table, REGISTRY_KEYS, prefix)
    if "host" not in table:
        raise ConfigError(reader.at(prefix + "host"), "required")
    host = parse_host(reader.string(table, "host", prefix), reader.at(prefix + "host"))
    values: dict[str, Any] = {"host": host}
    for key in ("aliases", "auth_hosts"):
        if key in table:
            values[key] = tuple(
                parse_host(h, reader.at(prefix + key)) for h in reader.string_list(table, key, prefix)
            )
    if "scheme" in table:
        text = reader.string(table, "scheme", prefix)
        try:
            values["scheme"] = Scheme(text.lower())
        except ValueError:
            raise ConfigError(
                reader.at(prefix + "scheme"), f"invalid scheme {text!r}: expected https or http"
            ) from None
    for key in ("insecure", "allow_push", "manifest_cache"):
        if key in table:
            values[key] = reader.boolean(table, key, prefix)
    if "ca_file" in table:
        values["ca_file"] = reader.path(table, "ca_file", prefix)
    if "tag_ttl" in table:
        values["tag_ttl"] = parse_time(
            reader.number_or_str(table, "tag_ttl", prefix), reader.at(prefix + "tag_ttl")
        )
    return RegistryConfig(**values)


def _registries(reader: TableReader, value: Any) -> tuple[tuple[RegistryConfig, ...], list[str]]:
    tables = reader.tables(value, "registries")
    entries = [(_registry(reader, table, f"registries[{i}]."), True) for i, table in enumerate(tables)]
    return merge_registries(entries, reader.source)


def _credentials(reader: TableReader, value: Any, environ: Mapping[str, str]) -> tuple[Credential, ...]:
    credentials: dict[str, Credential] = {}
    for i, table in enumerate(reader.tables(value, "credentials")):
        prefix = f"credentials[{i}]."
        reader.check_keys(table, CREDENTIAL_KEYS, prefix)
        credential = credential_from_table(table, reader.at(f"credentials[{i}]"), environ, reader.base_dir)
        if credential.scope in credentials:
            raise ConfigError(reader.at(prefix + "scope"), f"duplicate credential scope {credential.scope!r}")
        credentials[credential.scope] = credential
    return tuple(credentials.values())
