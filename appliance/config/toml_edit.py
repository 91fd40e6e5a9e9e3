"""Edits of the TOML configuration file and its atomic write: the only code that writes the file.

The file is read by ``config.toml_read`` (keys and typed access in ``config.toml_keys``, the simple keys
listed in ``config.keys``) and rendered from a ``Config`` by ``config.toml_render``; these ``toml_*``
modules are the only code that touches the TOML, always through tomlkit so comments are kept.

Every edit re-validates the whole resulting document before it writes, and writes atomically (temp
file + rename), so a rejected edit leaves the file byte-identical.  A file holding any secret (an
inline password, a proxy URL with a password) is written with mode 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from appliance.config.access_edit import holds_hashes
from appliance.config.credentials import delete_secret, store_secret
from appliance.config.fleet_read import CLEAR_SECRETS
from appliance.config.keys import KEYS, Mask
from appliance.config.model import Config, Secret, SecretStore, normalize_host
from appliance.config.toml_read import config_from_document, parse_text, read_document
from appliance.config.values import default_config, default_registries, parse_scope, url_has_password
from appliance.errors import ConfigError


def holds_secret(document: Mapping[str, Any]) -> bool:
    """True when the document holds a secret in clear (so it must be mode 0600)."""
    data = document.unwrap() if isinstance(document, tomlkit.TOMLDocument) else document
    credentials = data.get("credentials")
    if isinstance(credentials, list) and any(isinstance(c, dict) and "password" in c for c in credentials):
        return True
    fleet = data.get("fleet")
    if isinstance(fleet, Mapping) and any(fleet.get(key) for key in CLEAR_SECRETS):
        return True
    for key in KEYS:
        table = data.get(key.table, {}) if key.table else data
        value = table.get(key.name) if isinstance(table, Mapping) else None
        if key.mask is Mask.URL_PASSWORD and isinstance(value, str) and url_has_password(value):
            return True
    return holds_hashes(data)


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


def edit_document(
    path: Path, change: Callable[[tomlkit.TOMLDocument], None], environ: Mapping[str, str] | None = None
) -> Config:
    """Apply ``change`` to the file's document (created if missing), validate it all, write it."""
    return _edit(path, change, environ, create=True)


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
