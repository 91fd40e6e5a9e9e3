"""The TOML configuration file: the only reader and writer of it (tomlkit, comments kept).

Reading validates every key (unknown keys get a "did you mean" hint) and turns the document into a
``Config`` laid over lower-precedence defaults.  Every edit re-validates the whole resulting document
before it writes, and writes atomically (temp file + rename), so a rejected edit leaves the file
byte-identical.  A file holding any secret (an inline password, a proxy URL with a password) is
written with mode 0600.  Relative paths in the file are relative to the file's directory.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import AoT, Table

from appliance.config import (
    CacheConfig,
    Config,
    Credential,
    ManifestCachePolicy,
    ManifestTier,
    RegistryConfig,
    Scheme,
    Secret,
    SecretStore,
    Timeouts,
    TunnelMode,
    TunnelPolicy,
    normalize_host,
)
from appliance.config_values import (
    check_regex,
    default_config,
    default_registries,
    merge_registries,
    parse_event_queue,
    parse_host,
    parse_listen,
    parse_log_format,
    parse_resolve,
    parse_scope,
    parse_tunnel_hosts,
    parse_tunnel_mode,
    parse_upstream_proxy,
    url_has_password,
)
from appliance.credentials import CREDENTIAL_KEYS, credential_from_table, delete_secret, store_secret
from appliance.errors import ConfigError
from appliance.units import parse_size, parse_time

TOP_KEYS = (
    "listen",
    "tls_listen",
    "tls_cert_file",
    "tls_key_file",
    "cache_dir",
    "ca_dir",
    "control_socket",
    "control_group",
    "event_queue",
    "ca_cert_file",
    "ca_key_file",
    "allow_push",
    "verify_ssl",
    "disable_ipv6",
    "upstream_ca",
    "upstream_proxy",
    "debug",
    "log_format",
    "resolve",
    "cache",
    "manifest_cache",
    "timeouts",
    "tunnel",
    "registries",
    "credentials",
)
CACHE_KEYS = tuple(f.name for f in fields(CacheConfig))
MANIFEST_KEYS = ("enabled", "default_ttl", "tiers")
TIER_KEYS = ("name", "regex", "ttl")
TIMEOUT_KEYS = tuple(f.name for f in fields(Timeouts))
TUNNEL_KEYS = ("mode", "hosts")
REGISTRY_KEYS = tuple(f.name for f in fields(RegistryConfig))
_ALL_KEYS = frozenset(
    (
        *TOP_KEYS,
        *CACHE_KEYS,
        *MANIFEST_KEYS,
        *TIER_KEYS,
        *TIMEOUT_KEYS,
        *TUNNEL_KEYS,
        *REGISTRY_KEYS,
        *CREDENTIAL_KEYS,
    )
)


@dataclass(frozen=True, slots=True)
class FileResult:
    config: Config
    warnings: tuple[str, ...]


# --- reading -------------------------------------------------------------------------------------


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
    reader = _Reader(source, base_dir)
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
            k: parse_time(_number_or_str(reader, table, k, "timeouts."), reader.at(f"timeouts.{k}"))
            for k in table
        }
        changes["timeouts"] = replace(config.timeouts, **values)
    if "tunnel" in data:
        changes["tunnel"] = _tunnel(reader, reader.table(data, "tunnel"), config.tunnel)
    if "registries" in data:
        registries, found = _registries(reader, data["registries"])
        changes["registries"] = registries
        warnings.extend(found)
    if "credentials" in data:
        changes["credentials"] = _credentials(reader, data["credentials"], environ)
    if ("tls_cert_file" in changes) != ("tls_key_file" in changes):
        raise ConfigError(reader.at("tls_cert_file"), "tls_cert_file and tls_key_file go together")
    config = replace(config, config_path=path, **changes)
    return FileResult(config, tuple(warnings))


def load_file(path: Path, base: Config, environ: Mapping[str, str]) -> FileResult:
    return config_from_document(read_document(path), base, environ, path)


class _Reader:
    """Typed access to plain TOML data; every error names the file and the dotted key."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir

    def at(self, key: str) -> str:
        return f"{self.source}: {key}"

    def check_keys(self, table: Mapping[str, Any], valid: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                if not close:
                    close = [
                        k for k in difflib.get_close_matches(key, _ALL_KEYS, n=1, cutoff=0.6) if k in valid
                    ]
                hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(valid)})"
                raise ConfigError(self.at(f"{prefix}{key}"), f"unknown key {key!r}{hint}")

    def string(self, table: Mapping[str, Any], key: str, prefix: str = "") -> str:
        value = table[key]
        if not isinstance(value, str):
            raise ConfigError(self.at(prefix + key), f"expected a string, got {_show(value)}")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, prefix: str = "") -> bool:
        value = table[key]
        if not isinstance(value, bool):
            raise ConfigError(self.at(prefix + key), f"expected true or false, got {_show(value)}")
        return value

    def path(self, table: Mapping[str, Any], key: str, prefix: str = "") -> Path:
        text = self.string(table, key, prefix)
        if not text.strip():
            raise ConfigError(self.at(prefix + key), "empty path")
        path = Path(text).expanduser()
        if self.base_dir is not None and not path.is_absolute():
            path = self.base_dir / path
        return path

    def string_list(self, table: Mapping[str, Any], key: str, prefix: str = "") -> list[str]:
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(self.at(prefix + key), f"expected a list of strings, got {_show(value)}")
        return value

    def table(self, data: Mapping[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
        value = data[key]
        if not isinstance(value, dict):
            raise ConfigError(self.at(prefix + key), f"expected a table, got {_show(value)}")
        return value

    def tables(self, value: Any, key: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ConfigError(self.at(key), f"expected an array of tables ([[{key}]]), got {_show(value)}")
        return value


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _number_or_str(reader: _Reader, table: Mapping[str, Any], key: str, prefix: str) -> Any:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(reader.at(prefix + key), f"expected a number or a string, got {_show(value)}")
    return value


def _cache(reader: _Reader, table: dict[str, Any], current: CacheConfig) -> CacheConfig:
    reader.check_keys(table, CACHE_KEYS, "cache.")
    values: dict[str, Any] = {}
    for key in ("max_size", "min_free_disk"):
        if key in table:
            raw = _number_or_str(reader, table, key, "cache.")
            if isinstance(raw, float):
                raise ConfigError(reader.at(f"cache.{key}"), f"invalid size {raw!r}: expected whole bytes")
            values[key] = parse_size(raw, reader.at(f"cache.{key}"))
    if "inactive" in table:
        values["inactive"] = parse_time(
            _number_or_str(reader, table, "inactive", "cache."), reader.at("cache.inactive")
        )
    return replace(current, **values)


def _manifest_cache(
    reader: _Reader, table: dict[str, Any], current: ManifestCachePolicy
) -> ManifestCachePolicy:
    reader.check_keys(table, MANIFEST_KEYS, "manifest_cache.")
    policy = current
    if "enabled" in table:
        policy = replace(policy, enabled=reader.boolean(table, "enabled", "manifest_cache."))
    if "default_ttl" in table:
        ttl = _number_or_str(reader, table, "default_ttl", "manifest_cache.")
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
            ttl = parse_time(_number_or_str(reader, tier, "ttl", prefix), reader.at(prefix + "ttl"))
            tiers.append(ManifestTier(name=name, regex=regex, ttl=ttl))
        policy = replace(policy, tiers=tuple(tiers))
    return policy


def _tunnel(reader: _Reader, table: dict[str, Any], current: TunnelPolicy) -> TunnelPolicy:
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


def _registry(reader: _Reader, table: dict[str, Any], prefix: str) -> RegistryConfig:
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
            _number_or_str(reader, table, "tag_ttl", prefix), reader.at(prefix + "tag_ttl")
        )
    return RegistryConfig(**values)


def _registries(reader: _Reader, value: Any) -> tuple[tuple[RegistryConfig, ...], list[str]]:
    tables = reader.tables(value, "registries")
    entries = [(_registry(reader, table, f"registries[{i}]."), True) for i, table in enumerate(tables)]
    return merge_registries(entries, reader.source)


def _credentials(reader: _Reader, value: Any, environ: Mapping[str, str]) -> tuple[Credential, ...]:
    credentials: dict[str, Credential] = {}
    for i, table in enumerate(reader.tables(value, "credentials")):
        prefix = f"credentials[{i}]."
        reader.check_keys(table, CREDENTIAL_KEYS, prefix)
        credential = credential_from_table(table, reader.at(f"credentials[{i}]"), environ, reader.base_dir)
        if credential.scope in credentials:
            raise ConfigError(reader.at(prefix + "scope"), f"duplicate credential scope {credential.scope!r}")
        credentials[credential.scope] = credential
    return tuple(credentials.values())


# --- writing -------------------------------------------------------------------------------------


def holds_secret(document: Mapping[str, Any]) -> bool:
    """True when the document holds a secret in clear (so it must be mode 0600)."""
    data = document.unwrap() if isinstance(document, tomlkit.TOMLDocument) else document
    credentials = data.get("credentials")
    if isinstance(credentials, list) and any(isinstance(c, dict) and "password" in c for c in credentials):
        return True
    proxy = data.get("upstream_proxy")
    return isinstance(proxy, str) and url_has_password(proxy)


def write_document(path: Path, document: tomlkit.TOMLDocument) -> None:
    """Atomically replace ``path`` with ``document`` (0600 if it holds a secret)."""
    text = tomlkit.dumps(document)
    if holds_secret(document):
        mode = 0o600
    else:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # Set the mode before any secret byte reaches the disk.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


# --- edits (used by the control socket) ----------------------------------------------------------


def _edit(
    path: Path,
    change: Callable[[tomlkit.TOMLDocument], None],
    environ: Mapping[str, str] | None,
    *,
    create: bool = False,
) -> Config:
    env = os.environ if environ is None else environ
    if create and not path.exists():
        document = tomlkit.document()
    else:
        document = read_document(path)
    change(document)
    # Validate the whole resulting document before anything touches the disk.
    result = config_from_document(
        parse_text(tomlkit.dumps(document), str(path)), default_config(env), env, path
    )
    write_document(path, document)
    return result.config


def _registry_tables(document: tomlkit.TOMLDocument) -> AoT:
    """The ``[[registries]]`` array, materialising the defaults so adding one keeps them."""
    current = document.get("registries")
    if isinstance(current, AoT):
        return current
    aot = tomlkit.aot()
    if current is None:
        for registry in default_registries()[1:]:
            table = tomlkit.table()
            table["host"] = registry.host
            aot.append(table)
    elif current:
        raise ConfigError("registries", "expected an array of tables ([[registries]])")
    if "registries" in document:
        del document["registries"]
    document["registries"] = aot
    return aot


def _find_registry(aot: AoT, host: str) -> int | None:
    wanted = normalize_host(host)
    for i, table in enumerate(aot):
        if isinstance(table.get("host"), str) and normalize_host(str(table["host"])) == wanted:
            return i
    return None


def _fill(table: Table, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if value is None:
            if key in table:
                del table[key]
        else:
            table[key] = str(value) if isinstance(value, Path) else value


def add_registry(path: Path, values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Append a ``[[registries]]`` table; the host must not be configured yet."""
    host = values.get("host")
    if not isinstance(host, str):
        raise ConfigError("host", "required")

    def change(document: tomlkit.TOMLDocument) -> None:
        aot = _registry_tables(document)
        if _find_registry(aot, host) is not None:
            raise ConfigError(host, "registry already configured")
        table = tomlkit.table()
        _fill(table, values)
        aot.append(table)

    return _edit(path, change, environ, create=True)


def update_registry(
    path: Path, host: str, changes: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Config:
    """Set (or, with value None, remove) keys of the registry ``host``."""

    def change(document: tomlkit.TOMLDocument) -> None:
        aot = _registry_tables(document)
        index = _find_registry(aot, host)
        if index is None:
            if normalize_host(host) not in {normalize_host(n) for n in default_registries()[0].names()}:
                raise ConfigError(host, "no such registry in the config file")
            table = tomlkit.table()
            table["host"] = default_registries()[0].host
            aot.append(table)
            index = len(aot) - 1
        _fill(aot[index], changes)

    return _edit(path, change, environ, create=True)


def remove_registry(path: Path, host: str, environ: Mapping[str, str] | None = None) -> Config:
    """Remove the registry ``host`` (Docker Hub cannot be removed)."""
    if normalize_host(host) in {normalize_host(n) for n in default_registries()[0].names()}:
        raise ConfigError(host, "Docker Hub is always intercepted and cannot be removed")

    def change(document: tomlkit.TOMLDocument) -> None:
        aot = _registry_tables(document)
        index = _find_registry(aot, host)
        if index is None:
            raise ConfigError(host, "no such registry in the config file")
        del aot[index]
        if not len(aot):
            del document["registries"]
            document["registries"] = tomlkit.array()

    return _edit(path, change, environ, create=True)


def set_credential(
    path: Path,
    scope: str,
    username: str,
    *,
    password: Secret | None = None,
    store: SecretStore = SecretStore.TOML,
    reference: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Add or replace the credential for ``scope``.

    ``store`` TOML writes ``password`` inline (file becomes 0600); KEYRING saves ``password`` in the
    keyring first and writes only ``keyring = true``; FILE and ENV write ``reference`` (a path or a
    variable name).
    """
    scope = parse_scope(scope, "scope")
    table: dict[str, Any] = {"scope": scope, "username": username}
    if store in (SecretStore.TOML, SecretStore.SEED_ENV, SecretStore.KEYRING):
        if password is None or not password:
            raise ConfigError(f"credential {scope}", "a password is required")
        if store is SecretStore.KEYRING:
            store_secret(scope, username, password)
            table["keyring"] = True
        else:
            table["password"] = password.reveal()
    elif not reference:
        raise ConfigError(f"credential {scope}", f"a reference is required for store {store}")
    else:
        table["password_file" if store is SecretStore.FILE else "password_env"] = reference

    def change(document: tomlkit.TOMLDocument) -> None:
        aot = _credential_tables(document)
        new = tomlkit.table()
        _fill(new, table)
        index = _find_credential(aot, scope)
        if index is None:
            aot.append(new)
        else:
            aot[index] = new

    return _edit(path, change, environ, create=True)


def remove_credential(path: Path, scope: str, environ: Mapping[str, str] | None = None) -> Config:
    """Remove the credential for ``scope`` (and its keyring item, if it had one)."""
    wanted = parse_scope(scope, "scope")
    removed: dict[str, Any] = {}

    def change(document: tomlkit.TOMLDocument) -> None:
        aot = _credential_tables(document)
        index = _find_credential(aot, wanted)
        if index is None:
            raise ConfigError(f"credential {wanted}", "no such credential in the config file")
        removed.update(aot[index].unwrap())
        del aot[index]
        if not len(aot):
            del document["credentials"]

    config = _edit(path, change, environ)
    if removed.get("keyring") is True:
        delete_secret(wanted, str(removed.get("username", "")))
    return config


def _credential_tables(document: tomlkit.TOMLDocument) -> AoT:
    current = document.get("credentials")
    if isinstance(current, AoT):
        return current
    if current:
        raise ConfigError("credentials", "expected an array of tables ([[credentials]])")
    if "credentials" in document:
        del document["credentials"]
    aot = tomlkit.aot()
    document["credentials"] = aot
    return aot


def _find_credential(aot: AoT, scope: str) -> int | None:
    for i, table in enumerate(aot):
        raw = table.get("scope")
        if isinstance(raw, str):
            try:
                if parse_scope(raw, "scope") == scope:
                    return i
            except ConfigError:
                continue
    return None


__all__ = [
    "FileResult",
    "add_registry",
    "config_from_document",
    "holds_secret",
    "load_file",
    "parse_text",
    "read_document",
    "remove_credential",
    "remove_registry",
    "render_config",
    "set_credential",
    "update_registry",
    "write_document",
]


# --- rendering a Config as a commented document (import-env) -------------------------------------


def render_config(config: Config, defaults: Config, header: str = "") -> tomlkit.TOMLDocument:
    """``config`` as a commented TOML document: settings that differ from ``defaults`` are set, the
    rest appear as commented-out defaults so the file documents itself."""
    from appliance.config_values import format_resolve
    from appliance.credentials import credential_table
    from appliance.units import format_size, format_time

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
    return doc


def _registry_table(registry: RegistryConfig) -> Table:
    from appliance.config import docker_hub

    table = tomlkit.table()
    table.add("host", registry.host)
    default = docker_hub() if registry.host == docker_hub().host else RegistryConfig(host=registry.host)
    for field in fields(RegistryConfig):
        value = getattr(registry, field.name)
        if field.name == "host" or value == getattr(default, field.name):
            continue
        if field.name == "tag_ttl":
            from appliance.units import format_time

            value = format_time(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Path | Scheme):
            value = str(value)
        table.add(field.name, value)
    return table
