"""Validators shared by every configuration source (TOML, seed env vars, CLI flags), and the defaults.

Each parser takes the raw value and ``where`` (the env var, TOML key or flag it came from) and raises
``ConfigError`` naming both ``where`` and the offending value (never a secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from appliance.config.model import (
    DEFAULT_EXTRA_REGISTRIES,
    DOCKER_HUB_ALIASES,
    DOCKER_HUB_AUTH_HOST,
    DOCKER_HUB_HOST,
    Config,
    LogFormat,
    RegistryConfig,
    ResolveOverride,
    TunnelMode,
    TunnelPolicy,
    docker_hub,
    normalize_host,
)
from appliance.errors import ConfigError

APP_NAME = "registry-appliance"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"(?:{_LABEL})(?:\.{_LABEL})*\.?")
_TUNNEL_HOST_RE = re.compile(rf"(?:\*\.)?{_HOSTNAME_RE.pattern}")


def data_dir(environ: Mapping[str, str]) -> Path:
    """Where a non-root user's appliance keeps its cache, CA and socket by default."""
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local/share")
    return Path(base) / APP_NAME


def default_config_path(environ: Mapping[str, str]) -> Path:
    """The TOML file read when ``--config`` is not given (only if it exists)."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / APP_NAME / "config.toml"


def default_registries() -> tuple[RegistryConfig, ...]:
    return (docker_hub(), *(RegistryConfig(host=host) for host in DEFAULT_EXTRA_REGISTRIES))


def default_config(environ: Mapping[str, str]) -> Config:
    """The built-in defaults: the lowest-precedence configuration source."""
    base = data_dir(environ)
    return Config(
        cache_dir=base / "cache",
        ca_dir=base / "ca",
        control_socket=base / "control.sock",
        registries=default_registries(),
    )


def parse_bool(value: str | bool, where: str) -> bool | None:
    """``true/1/yes/on`` and ``false/0/no/off`` in any case; an empty string means "not set"."""
    if isinstance(value, bool):
        return value
    text = value.strip()
    if not text:
        return None
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ConfigError(where, f"invalid boolean {value!r}: expected true or false")


def parse_port(text: str, where: str, value: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ConfigError(where, f"invalid port in {value!r}: expected 1-65535")
    return int(text)


def parse_host(value: str, where: str) -> str:
    """A registry host name, ``host:port`` or ``[v6]:port``; lower-cased.  No scheme, no path."""
    text = value.strip().lower()
    if not text:
        raise ConfigError(where, f"empty host {value!r}")
    if "://" in text:
        raise ConfigError(where, f"invalid host {value!r}: give the host name only, without a scheme")
    if "/" in text:
        raise ConfigError(where, f"invalid host {value!r}: give the host name only, without a path")
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ConfigError(where, f"invalid host {value!r}")
        if rest:
            parse_port(rest[1:], where, value)
        return text
    name, sep, port = text.partition(":")
    if sep:
        parse_port(port, where, value)
    if not _HOSTNAME_RE.fullmatch(name):
        raise ConfigError(where, f"invalid host {value!r}")
    return text


def parse_scope(value: str, where: str) -> str:
    """A credential scope: ``host[:port]`` or ``host[:port]/repo/prefix``, lower-cased as OCI names are.

    A trailing ``/*`` is dropped."""
    text = value.strip()
    if text.endswith("/*"):
        text = text[:-2]
    text = text.rstrip("/")
    if "://" in text:
        raise ConfigError(where, f"invalid scope {value!r}: give host[/repository/prefix], without a scheme")
    host, sep, prefix = text.lower().partition("/")
    host = parse_host(host, where)
    if sep and (
        not prefix
        or prefix.startswith("/")
        or "//" in prefix
        or "*" in prefix
        or any(c.isspace() for c in prefix)
    ):
        raise ConfigError(where, f"invalid scope {value!r}: expected host or host/repository/prefix")
    return f"{host}/{prefix}" if sep else host


def parse_listen(value: str, where: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(where, f"invalid listen address {value!r}: expected HOST:PORT, e.g. 0.0.0.0:3128")
    return host, parse_port(port, where, value)


def parse_resolve(value: str, where: str) -> ResolveOverride:
    """``HOST[:PORT]=ADDR:PORT`` (curl's ``--resolve`` with an explicit target port)."""
    left, sep, right = value.strip().partition("=")
    if not sep:
        raise ConfigError(where, f"invalid resolve entry {value!r}: expected HOST[:PORT]=ADDR:PORT")
    host = parse_host(left, where)
    name, sep, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    address, address_port = parse_listen(right, where)
    if sep:
        return ResolveOverride(host=name, port=int(port), address=address, address_port=address_port)
    return ResolveOverride(host=host, port=None, address=address, address_port=address_port)


def format_resolve(entry: ResolveOverride) -> str:
    host = entry.host if entry.port is None else f"{entry.host}:{entry.port}"
    address = f"[{entry.address}]" if ":" in entry.address else entry.address
    return f"{host}={address}:{entry.address_port}"


def parse_tunnel_hosts(hosts: Iterable[str], where: str) -> tuple[str, ...]:
    parsed = []
    for host in hosts:
        text = host.strip().lower()
        name = text.rpartition(":")[0] if ":" in text else text
        if ":" in text:
            parse_port(text.rpartition(":")[2], where, host)
        if not name or not _TUNNEL_HOST_RE.fullmatch(name):
            raise ConfigError(where, f"invalid tunnel host {host!r}")
        parsed.append(text)
    return tuple(parsed)


def parse_tunnel(value: str, where: str) -> TunnelPolicy:
    """``default``, ``all``, ``none``, or a list of hosts (space or comma separated) to allow."""
    text = value.strip()
    if text.lower() in {"default", "all", "none"}:
        return TunnelPolicy(mode=TunnelMode(text.lower()))
    hosts = [h for h in re.split(r"[\s,]+", text) if h]
    if not hosts:
        raise ConfigError(where, f"invalid tunnel policy {value!r}: expected default, all, none or hosts")
    return TunnelPolicy(mode=TunnelMode.LIST, hosts=parse_tunnel_hosts(hosts, where))


def format_tunnel(policy: TunnelPolicy) -> str:
    return " ".join(policy.hosts) if policy.mode is TunnelMode.LIST else str(policy.mode)


def parse_tunnel_mode(value: str, where: str) -> TunnelMode:
    try:
        return TunnelMode(value.strip().lower())
    except ValueError:
        raise ConfigError(
            where, f"invalid tunnel mode {value!r}: expected default, all, none or list"
        ) from None


def parse_log_format(value: str, where: str) -> LogFormat:
    try:
        return LogFormat(value.strip().lower())
    except ValueError:
        raise ConfigError(where, f"invalid log format {value!r}: expected text or json") from None


def parse_upstream_proxy(value: str, where: str) -> str:
    """``http://[user:pass@]host:port``.  The value may hold a password, so errors never show it."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(
            where, "invalid upstream proxy URL: expected http://[user:pass@]host:port"
        ) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname or port is None:
        raise ConfigError(where, "invalid upstream proxy URL: expected http://[user:pass@]host:port")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ConfigError(where, "invalid upstream proxy URL: a proxy URL has no path")
    return text


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``********``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:********@{netloc}").geturl()


def url_has_password(url: str | None) -> bool:
    return bool(url) and urlsplit(url or "").password is not None


def check_regex(value: str, where: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ConfigError(where, f"invalid regular expression {value!r}: {exc}") from None
    return value


_HUB_NAMES = frozenset({DOCKER_HUB_HOST, *DOCKER_HUB_ALIASES})


def merge_registries(
    entries: Iterable[tuple[RegistryConfig, bool]], where: str
) -> tuple[tuple[RegistryConfig, ...], list[str]]:
    """Docker Hub first, then ``entries`` with duplicates merged (and a warning each).

    Each entry is ``(registry, explicit)``: an explicit entry (a TOML table) naming Docker Hub
    customises it silently; a bare host naming it (REGISTRIES) is a harmless duplicate.
    """
    warnings: list[str] = []
    hub = docker_hub()
    merged: list[RegistryConfig] = []
    seen: dict[str, int] = {}

    for registry, explicit in entries:
        key = normalize_host(registry.host)
        if key == DOCKER_HUB_AUTH_HOST:
            warnings.append(
                f"{where}: {registry.host!r} is Docker Hub's auth host, not a registry; merged into "
                f"Docker Hub (put Docker Hub credentials on auth.docker.io or docker.io instead)"
            )
            continue
        if key in _HUB_NAMES:
            if explicit:
                hub = replace(
                    registry,
                    host=DOCKER_HUB_HOST,
                    aliases=_unique((*hub.aliases, *registry.aliases)),
                    auth_hosts=_unique((*hub.auth_hosts, *registry.auth_hosts)),
                )
            else:
                warnings.append(
                    f"{where}: Docker Hub ({registry.host}) is always intercepted; duplicate merged"
                )
            continue
        if key in seen:
            warnings.append(f"{where}: duplicate registry {registry.host!r} merged")
            continue
        for alias in registry.aliases:
            seen.setdefault(normalize_host(alias), len(merged))
        seen[key] = len(merged)
        merged.append(registry)
    return (hub, *merged), warnings


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def parse_pull_ahead(value: object, where: str) -> int:
    """Blobs filled ahead at once per image: a whole number, 0 for off (TOML integer or env string)."""
    text = str(value).strip()
    # isascii: "²".isdigit() is true, and int() refuses it.
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or int(text) > 64:
        raise ConfigError(where, f"expected a whole number from 0 (off) to 64, got {value!r}")
    return int(text)


def parse_event_queue(value: object, where: str) -> int:
    """A subscriber queue length: a positive whole number (TOML integer or env string)."""
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ConfigError(where, f"expected a positive whole number, got {value!r}")
    return int(text)


def parse_control_group(value: str, where: str) -> str | None:
    """A group name or gid for the control socket; empty means none."""
    return value.strip() or None


def parse_connection_limit(value: object, where: str) -> int:
    """A connection count: a TOML integer from 1 to 1000000."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ConfigError(where, f"expected a whole number from 1 to 1000000, not {value!r}")
    return value
