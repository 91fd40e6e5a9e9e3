"""Rendering a ``Config`` as a commented TOML document (``appliance config import-env``).

Part of the ``config_file*`` modules, the only code that reads or writes the TOML file; this one only
builds the document, ``config.toml_edit.write_document`` writes it.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from appliance.config.access_edit import render_access
from appliance.config.credentials import credential_table
from appliance.config.model import Config, RegistryConfig, Scheme, Timeouts, docker_hub
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

    def put(container: Any, key: str, value: Any, default: Any, comment: str) -> None:
        container.add(tomlkit.comment(comment))
        if value != default:
            container.add(key, value)
        else:
            container.add(tomlkit.comment(f"{key} = {tomlkit.item(default).as_string()}"))

    def text(path: Path | None) -> str:
        return "" if path is None else str(path)

    listen = (f"{config.listen_host}:{config.listen_port}", f"{defaults.listen_host}:{defaults.listen_port}")
    put(doc, "listen", *listen, "Where clients connect (HTTPS_PROXY=http://this-host:3128).")
    put(doc, "cache_dir", str(config.cache_dir), str(defaults.cache_dir), "Blob and manifest cache.")
    put(
        doc,
        "ca_dir",
        str(config.ca_dir),
        str(defaults.ca_dir),
        "The interception CA (keep it: clients trust it).",
    )
    put(
        doc,
        "control_socket",
        str(config.control_socket),
        str(defaults.control_socket),
        "Unix socket for `appliance status` and the dashboard.",
    )
    put(
        doc,
        "ca_cert_file",
        text(config.ca_cert_file),
        text(defaults.ca_cert_file),
        "CA_CRT_FILE: bring your own CA certificate (default: ca_dir/ca.crt).",
    )
    put(
        doc,
        "ca_key_file",
        text(config.ca_key_file),
        text(defaults.ca_key_file),
        "CA_KEY_FILE: its key (default: ca_dir/ca.key).",
    )
    put(doc, "allow_push", config.allow_push, defaults.allow_push, "ALLOW_PUSH: let POST/PUT/DELETE through.")
    put(
        doc, "verify_ssl", config.verify_ssl, defaults.verify_ssl, "VERIFY_SSL: verify upstream certificates."
    )
    put(
        doc,
        "disable_ipv6",
        config.disable_ipv6,
        defaults.disable_ipv6,
        "DISABLE_IPV6: connect over IPv4 only.",
    )
    put(
        doc,
        "upstream_ca",
        text(config.upstream_ca),
        text(defaults.upstream_ca),
        "Extra CA bundle for upstream TLS (--upstream-ca).",
    )
    put(
        doc,
        "upstream_proxy",
        config.upstream_proxy or "",
        defaults.upstream_proxy or "",
        "UPSTREAM_PROXY: corporate proxy for the appliance's own upstream traffic.",
    )
    put(doc, "debug", config.debug, defaults.debug, "DEBUG: verbose logging.")
    put(doc, "log_format", str(config.log_format), str(defaults.log_format), "LOG_FORMAT: text or json.")
    put(
        doc,
        "resolve",
        [format_resolve(r) for r in config.resolve],
        [format_resolve(r) for r in defaults.resolve],
        "--resolve HOST[:PORT]=ADDR:PORT entries.",
    )

    cache = tomlkit.table()
    put(
        cache,
        "max_size",
        format_size(config.cache.max_size),
        format_size(defaults.cache.max_size),
        "CACHE_MAX_SIZE (nginx size: 32g, 500m, 1024k, bytes).",
    )
    put(
        cache,
        "inactive",
        format_time(config.cache.inactive),
        format_time(defaults.cache.inactive),
        "CACHE_INACTIVE: evict what was not used for this long (nginx time).",
    )
    put(
        cache,
        "min_free_disk",
        format_size(config.cache.min_free_disk),
        format_size(defaults.cache.min_free_disk),
        "Stop filling the cache below this much free disk.",
    )
    put(
        cache,
        "pull_ahead",
        config.cache.pull_ahead,
        defaults.cache.pull_ahead,
        "Once a client starts on an image's layers, fetch its other blobs this many at a time (0: off).",
    )
    doc.add(tomlkit.nl())
    doc.add("cache", cache)

    policy, default_policy = config.manifest_cache, defaults.manifest_cache
    manifest = tomlkit.table()
    put(
        manifest,
        "enabled",
        policy.enabled,
        default_policy.enabled,
        "ENABLE_MANIFEST_CACHE: cache tag manifests.",
    )
    put(
        manifest,
        "default_ttl",
        format_time(policy.default_ttl),
        format_time(default_policy.default_ttl),
        "MANIFEST_CACHE_DEFAULT_TIME: tags no tier matches.",
    )
    if policy.tiers != default_policy.tiers:
        tiers = tomlkit.aot()
        for tier in policy.tiers:
            tiers.append(tomlkit.item({"name": tier.name, "regex": tier.regex, "ttl": format_time(tier.ttl)}))
        manifest.add(tomlkit.comment("MANIFEST_CACHE_{PRIMARY,SECONDARY}_{REGEX,TIME}: checked in order."))
        manifest.add("tiers", tiers)
    else:
        manifest.add(tomlkit.comment("Tiers (default: primary 10m, secondary 60d), see config.example.toml."))
    doc.add(tomlkit.nl())
    doc.add("manifest_cache", manifest)

    timeouts = tomlkit.table()
    timeouts.add(tomlkit.comment("SEND_TIMEOUT, CLIENT_BODY_TIMEOUT, ... (nginx time)."))
    for field in fields(Timeouts):
        value, default = getattr(config.timeouts, field.name), getattr(defaults.timeouts, field.name)
        if value != default:
            timeouts.add(field.name, format_time(value))
        else:
            timeouts.add(tomlkit.comment(f'{field.name} = "{format_time(default)}"'))
    doc.add(tomlkit.nl())
    doc.add("timeouts", timeouts)

    tunnel = tomlkit.table()
    put(
        tunnel,
        "mode",
        str(config.tunnel.mode),
        str(defaults.tunnel.mode),
        "TUNNEL: what a CONNECT to a non-registry host may reach: default, all, none, list.",
    )
    if config.tunnel.hosts:
        tunnel.add("hosts", list(config.tunnel.hosts))
    doc.add(tomlkit.nl())
    doc.add("tunnel", tunnel)

    limits = tomlkit.table()
    put(
        limits,
        "connections_per_source",
        config.limits.connections_per_source,
        defaults.limits.connections_per_source,
        "Client connections one IP address may hold open at once (more are refused with 503).",
    )
    put(
        limits,
        "max_connections",
        config.limits.max_connections,
        defaults.limits.max_connections,
        "Client connections in all (bounds the memory stalled clients can hold).",
    )
    doc.add(tomlkit.nl())
    doc.add("limits", limits)

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
    return doc


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
