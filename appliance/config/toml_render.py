"""Rendering a ``Config`` as a commented TOML document (``appliance config import-env``).

Part of the ``toml_*`` modules, the only code that reads or writes the TOML file; this one only builds
the document, ``config.toml_edit.write_document`` writes it.  The simple keys are rendered as the key
table (``config.keys``) lists them; the arrays of tables and ``[access]`` by hand.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from appliance.config.access_edit import render_access
from appliance.config.credentials import credential_table
from appliance.config.fleet_read import fleet_table
from appliance.config.keys import TABLES, ConfigKey, Kind, get, keys_of
from appliance.config.model import Config, ManifestCachePolicy, RegistryConfig, Scheme, docker_hub
from appliance.config.units import format_size, format_time
from appliance.config.values import format_resolve


def render_config(config: Config, defaults: Config, header: str = "") -> tomlkit.TOMLDocument:
    """``config`` as a commented TOML document: settings that differ from ``defaults`` are set, the
    rest appear as commented-out defaults so the file documents itself."""
    doc = tomlkit.document()
    for line in (header or "registry-appliance configuration").splitlines():
        doc.add(tomlkit.comment(line))
    doc.add(tomlkit.comment("Commented-out keys show the built-in default. See config.example.toml."))
    doc.add(tomlkit.nl())

    for section in TABLES:
        container: Any = tomlkit.table() if section.name else doc
        if section.comment:
            container.add(tomlkit.comment(section.comment))
        for key in keys_of(section.name):
            value, default = toml_value(key, get(config, key)), toml_value(key, get(defaults, key))
            if key.comment:
                container.add(tomlkit.comment(key.comment))
            if value != default:
                container.add(key.name, value)
            else:
                container.add(tomlkit.comment(f"{key.name} = {tomlkit.item(default).as_string()}"))
        if section.name == "manifest_cache":
            _render_tiers(container, config.manifest_cache, defaults.manifest_cache)
        if section.name:
            doc.add(tomlkit.nl())
            doc.add(section.name, container)

    doc.add(tomlkit.nl())
    doc.add(tomlkit.comment("REGISTRIES: Docker Hub is always intercepted; list the others."))
    if config.registries == defaults.registries:
        for registry in defaults.registries[1:]:
            doc.add(tomlkit.comment(f'[[registries]] host = "{registry.host}"'))
    else:
        registries = tomlkit.aot()
        for registry in config.registries:
            table = _registry_table(registry)
            if registry is config.registries[0] and len(table) == 1:
                continue  # Docker Hub with nothing customised
            registries.append(table)
        doc.add("registries", registries if len(registries) else tomlkit.array())

    if config.credentials:
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment("AUTH_REGISTRIES: credentials per host or host/repository/prefix."))
        credentials = tomlkit.aot()
        for credential in config.credentials:
            credentials.append(tomlkit.item(credential_table(credential)))
        doc.add("credentials", credentials)
    render_access(doc, config, defaults)
    if config.fleet.enabled:
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment("FLEET_*: several replicas sharing one bucket (README, Running several)."))
        doc.add("fleet", tomlkit.item(fleet_table(config.fleet)))
    return doc


def toml_value(key: ConfigKey, value: Any) -> Any:
    """A key's model value as the file spells it (``None`` as an empty string)."""
    if value is None:
        return ""
    match key.kind:
        case Kind.PATH | Kind.TEXT | Kind.TUNNEL_MODE:
            return str(value)
        case Kind.BOOL | Kind.WHOLE:
            return value
        case Kind.SIZE:
            return format_size(value)
        case Kind.TIME:
            return format_time(value)
        case Kind.LISTEN:
            host, port = value
            return f"{host}:{port}"
        case Kind.RESOLVE:
            return [format_resolve(entry) for entry in value]
        case Kind.TUNNEL_HOSTS:
            return list(value)


def _render_tiers(manifest: Any, policy: ManifestCachePolicy, default_policy: ManifestCachePolicy) -> None:
    if policy.tiers != default_policy.tiers:
        tiers = tomlkit.aot()
        for tier in policy.tiers:
            tiers.append(tomlkit.item({"name": tier.name, "regex": tier.regex, "ttl": format_time(tier.ttl)}))
        manifest.add(tomlkit.comment("MANIFEST_CACHE_{PRIMARY,SECONDARY}_{REGEX,TIME}: checked in order."))
        manifest.add("tiers", tiers)
    else:
        manifest.add(tomlkit.comment("Tiers (default: primary 10m, secondary 60d), see config.example.toml."))


def _registry_table(registry: RegistryConfig) -> Table:
    table = tomlkit.table()
    table.add("host", registry.host)
    default = docker_hub() if registry.host == docker_hub().host else RegistryConfig(host=registry.host)
    for field in fields(RegistryConfig):
        value = getattr(registry, field.name)
        if field.name == "host" or value == getattr(default, field.name):
            continue
        if field.name == "tag_ttl":
            value = format_time(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Path | Scheme):
            value = str(value)
        table.add(field.name, value)
    return table
