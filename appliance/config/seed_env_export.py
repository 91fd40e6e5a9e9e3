"""A ``Config`` -> the seed's environment variables, as ``KEY=value`` lines for a shell or an env-file.

The inverse of ``seed_env.apply_env`` for everything the variables can express; the rest is reported
as warnings.  AUTH_REGISTRIES gets delimiters that no credential collides with (``seed_env_auth``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from appliance.config.model import CacheConfig, Config, LogFormat, RegistryConfig, TunnelPolicy, docker_hub
from appliance.config.seed_env import TIER_VARS, TIMEOUT_VARS
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

    pairs.append(("CACHE_MAX_SIZE", format_size(config.cache.max_size)))
    pairs.append(("CACHE_INACTIVE", format_time(config.cache.inactive)))
    if config.cache.min_free_disk != CacheConfig().min_free_disk:
        warnings.append("cache.min_free_disk has no env var equivalent")

    policy = config.manifest_cache
    pairs.append(("ENABLE_MANIFEST_CACHE", _bool(policy.enabled)))
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
    pairs.append(("MANIFEST_CACHE_DEFAULT_TIME", format_time(policy.default_ttl)))

    pairs.append(("ALLOW_PUSH", _bool(config.allow_push)))
    pairs.append(("VERIFY_SSL", _bool(config.verify_ssl)))
    pairs.append(("DISABLE_IPV6", _bool(config.disable_ipv6)))
    for name, field_name in TIMEOUT_VARS.items():
        pairs.append((name, format_time(getattr(config.timeouts, field_name))))
    if config.ca_key_file is not None:
        pairs.append(("CA_KEY_FILE", str(config.ca_key_file)))
    if config.ca_cert_file is not None:
        pairs.append(("CA_CRT_FILE", str(config.ca_cert_file)))
    pairs.append(("DEBUG", _bool(config.debug)))

    if config.upstream_proxy:
        pairs.append(("UPSTREAM_PROXY", config.upstream_proxy))
    if config.tunnel != TunnelPolicy():
        pairs.append(("TUNNEL", format_tunnel(config.tunnel)))
    if (config.listen_host, config.listen_port) != (defaults.listen_host, defaults.listen_port):
        host = f"[{config.listen_host}]" if ":" in config.listen_host else config.listen_host
        pairs.append(("LISTEN", f"{host}:{config.listen_port}"))
    if config.log_format is not LogFormat.TEXT:
        pairs.append(("LOG_FORMAT", str(config.log_format)))
    if config.cache.pull_ahead != defaults.cache.pull_ahead:
        pairs.append(("APPLIANCE_PULL_AHEAD", str(config.cache.pull_ahead)))
    if config.allow_clients is not None:
        pairs.append(("ALLOW_CLIENTS", ",".join(str(network) for network in config.allow_clients)))
    if config.tls_listen is not None:
        host, port = config.tls_listen
        pairs.append(("TLS_LISTEN", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"))
    if config.tls_cert_file is not None and config.tls_key_file is not None:
        pairs.append(("TLS_CERT_FILE", str(config.tls_cert_file)))
        pairs.append(("TLS_KEY_FILE", str(config.tls_key_file)))
    if config.access != defaults.access:
        warnings.append("[access] (users, tokens, ACL rules) has no env var equivalent")
    for what, value_set in (
        ("resolve", bool(config.resolve)),
        ("upstream_ca", config.upstream_ca is not None),
    ):
        if value_set:
            warnings.append(f"{what} has no env var equivalent (use the command-line flag)")
    return pairs, warnings


def _bool(value: bool) -> str:
    return "true" if value else "false"


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
