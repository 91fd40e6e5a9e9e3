"""The seed's environment variables (rpardini 0.7.0) <-> ``Config``, with the seed's known bugs fixed.

``apply_env`` lays the variables over a lower-precedence ``Config``; ``export_env`` turns a ``Config``
back into ``KEY=value`` pairs in the seed's format, choosing delimiters that no credential collides with.

AUTH_REGISTRIES entries are split on AUTH_REGISTRIES_DELIMITER (D1; the default single space splits on
runs of whitespace, as the seed's shell did).  Within an entry, host and user are split off the front
on AUTH_REGISTRY_DELIMITER (D2) and the rest, delimiters included, is the password.  With a custom D1,
leading whitespace before a host is dropped, whitespace-only entries are skipped and one final newline
of the whole value is dropped (YAML block scalars add one); everything else in a password is kept.

``host:port`` with the default ``:`` D2: ``myreg:5000:user:pass`` is read as host ``myreg:5000`` when
the entry has at least four fields, the second is all digits, and either ``myreg:5000`` is a configured
registry or ``myreg`` alone is not.  Otherwise the second field is the user.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from appliance.config import (
    DEFAULT_EXTRA_REGISTRIES,
    DOCKER_HUB_AUTH_HOST,
    CacheConfig,
    Config,
    Credential,
    LogFormat,
    ManifestCachePolicy,
    RegistryConfig,
    Secret,
    SecretStore,
    Timeouts,
    TunnelPolicy,
    docker_hub,
    normalize_host,
)
from appliance.config_values import (
    check_regex,
    format_tunnel,
    merge_registries,
    parse_bool,
    parse_event_queue,
    parse_host,
    parse_listen,
    parse_log_format,
    parse_scope,
    parse_tunnel,
    parse_upstream_proxy,
)
from appliance.errors import ConfigError
from appliance.units import format_size, format_time, parse_size, parse_time

# The seed image's sample value: it means "no credentials".
SEED_DUMMY_AUTH = "some.authenticated.registry:oneuser:onepassword another.registry:user:password"
DEFAULT_ENTRIES_DELIMITER = " "
DEFAULT_ENTRY_DELIMITER = ":"

TIMEOUT_VARS: dict[str, str] = {f"{field.name.upper()}_TIMEOUT": field.name for field in fields(Timeouts)}
_TIERS = (
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
    *(name for _, regex, time in _TIERS for name in (regex, time)),
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
        known = _known_hosts(config.registries)
        credentials, found = parse_auth_registries(
            auth,
            get("AUTH_REGISTRIES_DELIMITER") or DEFAULT_ENTRIES_DELIMITER,
            get("AUTH_REGISTRY_DELIMITER") or DEFAULT_ENTRY_DELIMITER,
            known,
        )
        warnings.extend(found)
        if base.credentials and _plain(base.credentials) != _plain(credentials):
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
    for name, regex_var, time_var in _TIERS:
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


def _known_hosts(registries: Iterable[RegistryConfig]) -> frozenset[str]:
    names = {DOCKER_HUB_AUTH_HOST}
    for registry in registries:
        names.update(normalize_host(name) for name in (*registry.names(), *registry.auth_hosts))
    return frozenset(names)


def _plain(credentials: Iterable[Credential]) -> list[tuple[str, str, str]]:
    return [(c.scope, c.username, c.password.reveal()) for c in credentials]


_PORT_FIELD_RE = re.compile(r"\d{1,5}(/.*)?", re.DOTALL)


def _entries(value: str, entries_delimiter: str) -> Iterator[str]:
    if not entries_delimiter.strip():
        yield from value.split()
        return
    value = value.removesuffix("\n").removesuffix("\r")
    for entry in value.split(entries_delimiter):
        entry = entry.lstrip()
        if entry:
            yield entry


def _split_entry(entry: str, delimiter: str, known: frozenset[str]) -> list[str]:
    if delimiter == ":":
        parts = entry.split(":")
        if len(parts) >= 4 and _PORT_FIELD_RE.fullmatch(parts[1]):
            with_port = normalize_host(f"{parts[0]}:{parts[1]}".split("/", 1)[0])
            if with_port in known or normalize_host(parts[0]) not in known:
                return [f"{parts[0]}:{parts[1]}", parts[2], ":".join(parts[3:])]
    return entry.split(delimiter, 2)


def parse_auth_registries(
    value: str,
    entries_delimiter: str = DEFAULT_ENTRIES_DELIMITER,
    entry_delimiter: str = DEFAULT_ENTRY_DELIMITER,
    known_hosts: frozenset[str] = frozenset(),
) -> tuple[tuple[Credential, ...], list[str]]:
    """AUTH_REGISTRIES -> credentials (``store=SEED_ENV``).  Errors name the entry, never its secret."""
    if not entry_delimiter:
        raise ConfigError("AUTH_REGISTRY_DELIMITER", "must not be empty")
    if value.strip() == SEED_DUMMY_AUTH:
        return (), []
    warnings: list[str] = []
    credentials: dict[str, Credential] = {}
    for number, entry in enumerate(_entries(value, entries_delimiter), start=1):
        where = f"AUTH_REGISTRIES entry {number}"
        parts = _split_entry(entry, entry_delimiter, known_hosts)
        host_text = parts[0]
        # Only a plausible host is echoed back: with wrong delimiters the "host" may be a secret.
        shown = host_text if re.fullmatch(r"[\w.:/\[\]*-]{1,253}", host_text) else "?"
        if len(parts) < 3:
            raise ConfigError(
                where,
                f"(host {shown!r}) expected host{entry_delimiter}user{entry_delimiter}password; "
                f"check AUTH_REGISTRIES_DELIMITER ({entries_delimiter!r}) and AUTH_REGISTRY_DELIMITER "
                f"({entry_delimiter!r})",
            )
        if not host_text.strip():
            raise ConfigError(where, "empty host")
        try:
            scope = parse_scope(host_text, where)
        except ConfigError:
            raise ConfigError(where, f"invalid host {shown!r}") from None
        username, password = parts[1], parts[2]
        if not username:
            raise ConfigError(where, f"(host {scope!r}) empty user name")
        if not password:
            raise ConfigError(where, f"(host {scope!r}) empty password")
        if scope in credentials:
            warnings.append(f"{where}: duplicate credential for {scope!r}; the later one wins")
        credentials[scope] = Credential(scope, username, Secret(password), SecretStore.SEED_ENV)
    return tuple(credentials.values()), warnings


# Seed-README delimiters first, then fallbacks for secrets that contain those too.
_DELIMITER_CANDIDATES: tuple[tuple[str, str], ...] = (
    (DEFAULT_ENTRIES_DELIMITER, DEFAULT_ENTRY_DELIMITER),
    (";;;", ":::"),
    ("|||", "%%%"),
    (";;;;;", ":::::"),
    ("\u241e\u241e", "\u241f\u241f"),
)


def encode_auth_registries(
    credentials: Iterable[Credential], known_hosts: frozenset[str] = frozenset()
) -> tuple[str, str, str]:
    """Credentials -> (AUTH_REGISTRIES, AUTH_REGISTRIES_DELIMITER, AUTH_REGISTRY_DELIMITER).

    Picks the first delimiter pair whose encoding parses back to exactly these credentials.
    """
    creds = list(credentials)
    wanted = _plain(creds)
    if not creds:
        return "", DEFAULT_ENTRIES_DELIMITER, DEFAULT_ENTRY_DELIMITER
    candidates = list(_DELIMITER_CANDIDATES)
    candidates.extend((f"<;{n};>", f"<:{n}:>") for n in range(64))
    for entries_delimiter, entry_delimiter in candidates:
        value = entries_delimiter.join(
            f"{c.scope}{entry_delimiter}{c.username}{entry_delimiter}{c.password.reveal()}" for c in creds
        )
        for attempt in (value, value + entries_delimiter):
            try:
                parsed, _ = parse_auth_registries(attempt, entries_delimiter, entry_delimiter, known_hosts)
            except ConfigError:
                continue
            if _plain(parsed) == wanted and attempt.strip() != SEED_DUMMY_AUTH:
                return attempt, entries_delimiter, entry_delimiter
    raise ConfigError("AUTH_REGISTRIES", "cannot find delimiters that no credential contains")


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
        config.credentials, _known_hosts(config.registries)
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
    for name, regex_var, time_var in _TIERS:
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
