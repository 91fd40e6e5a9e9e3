"""Where a credential's secret lives, and reading it from there: TOML, OS keyring, a file, an env var.

Keyring items use the service name ``registry-appliance`` and the keyring user name
``<username>@<scope>`` (e.g. ``alice@docker.io/orgA``), so one keyring can hold several accounts for
one registry.  Secrets never appear in error messages; the scope, user and reference do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keyring
import keyring.errors

from appliance.config.model import Credential, Secret, SecretStore
from appliance.config.values import parse_scope
from appliance.errors import ConfigError, SecretUnavailable

KEYRING_SERVICE = "registry-appliance"
# The TOML keys that say where the secret is; exactly one must be given.
SECRET_KEYS = ("password", "keyring", "password_file", "password_env")
CREDENTIAL_KEYS = ("scope", "username", *SECRET_KEYS)
_OTHER_OPTIONS = (
    "put the secret in the config file (password = ...), in a file (password_file = ...) "
    "or in an environment variable (password_env = ...)"
)


def keyring_user(scope: str, username: str) -> str:
    return f"{username}@{scope}"


def keyring_available() -> bool:
    """True when an OS keyring backend is usable (not in a bare container)."""
    backend = keyring.get_keyring()
    return bool(backend.priority > 0)


def _require_keyring(where: str) -> None:
    if not keyring_available():
        raise SecretUnavailable(where, f"no OS keyring backend is available here; {_OTHER_OPTIONS}")


def store_secret(scope: str, username: str, secret: Secret) -> str:
    """Save ``secret`` in the OS keyring; returns the keyring user name it is stored under."""
    where = f"credential {scope}"
    _require_keyring(where)
    user = keyring_user(scope, username)
    try:
        keyring.set_password(KEYRING_SERVICE, user, secret.reveal())
    except keyring.errors.KeyringError as exc:
        raise SecretUnavailable(where, f"cannot write to the keyring: {type(exc).__name__}") from None
    return user


def delete_secret(scope: str, username: str) -> None:
    """Remove a keyring item, if there is one (a missing item or keyring is not an error)."""
    if not keyring_available():
        return
    try:
        keyring.delete_password(KEYRING_SERVICE, keyring_user(scope, username))
    except keyring.errors.PasswordDeleteError:
        pass
    except keyring.errors.KeyringError as exc:
        raise SecretUnavailable(
            f"credential {scope}", f"cannot delete from the keyring: {type(exc).__name__}"
        ) from None


def resolve_secret(
    store: SecretStore,
    scope: str,
    username: str,
    reference: str | None,
    environ: Mapping[str, str],
) -> Secret:
    """Read the secret of a credential whose TOML holds only a reference to it."""
    where = f"credential {scope}"
    if store is SecretStore.KEYRING:
        _require_keyring(where)
        user = reference or keyring_user(scope, username)
        try:
            value = keyring.get_password(KEYRING_SERVICE, user)
        except keyring.errors.KeyringError as exc:
            raise SecretUnavailable(where, f"cannot read the keyring: {type(exc).__name__}") from None
        if value is None:
            raise SecretUnavailable(
                where,
                f"no keyring item for service {KEYRING_SERVICE!r} user {user!r}; store one with "
                f"`keyring set {KEYRING_SERVICE} '{user}'`, or {_OTHER_OPTIONS}",
            )
        return Secret(value)
    if store is SecretStore.FILE:
        return read_secret_file(Path(reference or ""), where, "password_file ")
    if store is SecretStore.ENV:
        value = environ.get(reference or "")
        if not value:
            raise SecretUnavailable(where, f"password_env: environment variable {reference!r} is not set")
        return Secret(value)
    raise ConfigError(where, f"secret store {store} has no reference to resolve")


def credential_from_table(
    table: Mapping[str, Any],
    where: str,
    environ: Mapping[str, str],
    base_dir: Path | None = None,
) -> Credential:
    """A ``[[credentials]]`` table -> ``Credential``, reading the secret from wherever it lives."""
    scope_value = table.get("scope")
    if not isinstance(scope_value, str):
        raise ConfigError(f"{where}.scope", "required: a host or host/repository/prefix string")
    scope = parse_scope(scope_value, f"{where}.scope")
    username = table.get("username")
    if not isinstance(username, str) or not username:
        raise ConfigError(f"{where}.username", f"required for credential {scope}: a non-empty string")
    given = [key for key in SECRET_KEYS if key in table and table[key] is not False]
    if len(given) != 1:
        raise ConfigError(
            where,
            f"credential {scope} needs exactly one of password, keyring = true, password_file, "
            f"password_env (got {', '.join(given) or 'none'})",
        )
    key = given[0]
    value = table[key]
    if key == "password":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.password", f"credential {scope}: must be a non-empty string")
        return Credential(scope, username, Secret(value), SecretStore.TOML)
    if key == "keyring":
        if value is not True:
            raise ConfigError(f"{where}.keyring", f"credential {scope}: must be true or false")
        user = keyring_user(scope, username)
        secret = resolve_secret(SecretStore.KEYRING, scope, username, user, environ)
        return Credential(scope, username, secret, SecretStore.KEYRING, user)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}", f"credential {scope}: must be a non-empty string")
    if key == "password_file":
        path = Path(value).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        secret = resolve_secret(SecretStore.FILE, scope, username, str(path), environ)
        return Credential(scope, username, secret, SecretStore.FILE, str(path))
    secret = resolve_secret(SecretStore.ENV, scope, username, value, environ)
    return Credential(scope, username, secret, SecretStore.ENV, value)


def credential_table(credential: Credential) -> dict[str, Any]:
    """The ``[[credentials]]`` table for ``credential`` (inline password for TOML and seed-env ones)."""
    table: dict[str, Any] = {"scope": credential.scope, "username": credential.username}
    if credential.store is SecretStore.KEYRING:
        table["keyring"] = True
    elif credential.store is SecretStore.FILE:
        table["password_file"] = credential.reference
    elif credential.store is SecretStore.ENV:
        table["password_env"] = credential.reference
    else:
        table["password"] = credential.password.reveal()
    return table


def describe_store(credential: Credential) -> str:
    """Where the secret is, for summaries (never the secret itself)."""
    if credential.store is SecretStore.KEYRING:
        return f"keyring {KEYRING_SERVICE}/{credential.reference}"
    if credential.store is SecretStore.FILE:
        return f"file {credential.reference}"
    if credential.store is SecretStore.ENV:
        return f"env ${credential.reference}"
    if credential.store is SecretStore.SEED_ENV:
        return "AUTH_REGISTRIES"
    return "config file"


def read_secret_file(path: Path, where: str, label: str = "") -> Secret:
    """The secret a file holds (``label`` names the key in messages, e.g. ``"password_file "``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SecretUnavailable(where, f"cannot read {label}{str(path)!r}: {reason}") from None
    # Secret files are usually written with a final newline that is not part of the secret.
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise SecretUnavailable(where, f"{label}{str(path)!r} is empty")
    return Secret(text)
