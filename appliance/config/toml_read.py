"""Reading the TOML file into a ``Config``: every key validated, laid over lower-precedence defaults.

Part of the ``toml_*`` modules, the only code that reads or writes the TOML file.  The simple keys are
read as the key table (``config.keys``) lists them, each as its kind requires; the arrays of tables
(registries, credentials, manifest tiers), ``[access]`` and ``[fleet]`` (``fleet_read``) are read by
hand.  Unknown keys get a "did you mean" hint; relative paths in the file are relative to the file's
directory.
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
from appliance.config.fleet_read import fleet_from_table
from appliance.config.keys import TABLES, ConfigKey, Kind, keys_of, with_value
from appliance.config.model import Config, Credential, ManifestTier, RegistryConfig, Scheme
from appliance.config.toml_keys import REGISTRY_KEYS, TIER_KEYS, VALID_KEYS, TableReader
from appliance.config.units import parse_size, parse_time
from appliance.config.values import (
    check_regex,
    merge_registries,
    parse_host,
    parse_listen,
    parse_resolve,
    parse_tunnel_hosts,
    parse_tunnel_mode,
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
    reader.check_keys(data, VALID_KEYS[""], "")
    config = base
    for table in TABLES:
        if table.name and table.name not in data:
            continue
        raw = reader.table(data, table.name) if table.name else data
        prefix = f"{table.name}." if table.name else ""
        if table.name:
            reader.check_keys(raw, VALID_KEYS[table.name], prefix)
        for key in keys_of(table.name):
            if key.name in raw:
                config = with_value(config, key, _value(reader, key, raw, prefix))
        if table.name == "manifest_cache" and "tiers" in raw:
            tiers = _tiers(reader, raw["tiers"])
            config = replace(config, manifest_cache=replace(config.manifest_cache, tiers=tiers))
        if table.check is not None:
            if table.name:
                checked = table.check(reader.at, raw, getattr(config, table.name))
                config = replace(config, **{table.name: checked})
            else:
                config = table.check(reader.at, raw, config)
    changes: dict[str, Any] = {}
    if "registries" in data:
        registries, found = _registries(reader, data["registries"])
        changes["registries"] = registries
        warnings.extend(found)
    if "credentials" in data:
        changes["credentials"] = _credentials(reader, data["credentials"], environ)
    changes.update(access_changes(reader, data))
    if "fleet" in data:
        changes["fleet"] = fleet_from_table(reader, reader.table(data, "fleet"), config.fleet, environ)
    config = replace(config, config_path=path, **changes)
    return FileResult(config, tuple(warnings))


def load_file(path: Path, base: Config, environ: Mapping[str, str]) -> FileResult:
    return config_from_document(read_document(path), base, environ, path)


def _value(reader: TableReader, key: ConfigKey, table: Mapping[str, Any], prefix: str) -> Any:
    """The value of ``key`` in ``table``, checked as its kind requires."""
    name = key.name
    at = reader.at(prefix + name)
    match key.kind:
        case Kind.PATH:
            return reader.path(table, name, prefix)
        case Kind.BOOL:
            return reader.boolean(table, name, prefix)
        case Kind.SIZE:
            raw = reader.number_or_str(table, name, prefix)
            if isinstance(raw, float):
                raise ConfigError(at, f"invalid size {raw!r}: expected whole bytes")
            return parse_size(raw, at)
        case Kind.TIME:
            return parse_time(reader.number_or_str(table, name, prefix), at)
        case Kind.WHOLE:
            assert key.parse is not None, key.dotted
            return key.parse(table[name], at)
        case Kind.TEXT:
            text = reader.string(table, name, prefix)
            return key.parse(text, at) if key.parse else text
        case Kind.LISTEN:
            return parse_listen(reader.string(table, name, prefix), at)
        case Kind.RESOLVE:
            return tuple(
                parse_resolve(item, reader.at(f"{prefix}{name}[{i}]"))
                for i, item in enumerate(reader.string_list(table, name, prefix))
            )
        case Kind.TUNNEL_MODE:
            return parse_tunnel_mode(reader.string(table, name, prefix), at)
        case Kind.TUNNEL_HOSTS:
            return parse_tunnel_hosts(reader.string_list(table, name, prefix), at)


def _tiers(reader: TableReader, value: Any) -> tuple[ManifestTier, ...]:
    tiers = []
    names: set[str] = set()
    for i, tier in enumerate(reader.tables(value, "manifest_cache.tiers")):
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
    return tuple(tiers)


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
