"""Reading ``[fleet]`` and the FLEET_* variables into a ``FleetConfig``, and writing the variables back.

The TOML table and the variables lay over a lower-precedence ``FleetConfig`` key by key, like the rest
of the configuration (defaults < file < variables).  The S3 secret access key comes from exactly one
of ``secret_access_key`` / ``secret_access_key_file`` / ``secret_access_key_env`` / ``keyring = true``
(the keyring item is ``s3@fleet`` of service ``registry-appliance``); the token from ``token`` or
``token_file``.  Whether the result can run is ``FleetConfig.checked``, called once every source
has been applied (``load.load_config``), since a TOML file may leave the token to FLEET_TOKEN.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from appliance.config.credentials import KEYRING_SERVICE, keyring_user, read_secret_file, resolve_secret
from appliance.config.fleet import (
    FleetConfig,
    SecretSource,
    parse_advertise_url,
    parse_endpoint,
    parse_janitor_interval,
    parse_lease_ttl,
    parse_replica_id,
    parse_store,
)
from appliance.config.model import SecretStore
from appliance.config.secret import Secret
from appliance.config.toml_keys import TableReader
from appliance.config.units import format_size, format_time, parse_size, parse_time
from appliance.errors import ConfigError, SecretUnavailable

SECRET_KEYS = ("secret_access_key", "secret_access_key_file", "secret_access_key_env", "keyring")
FLEET_KEYS = (
    "store",
    "endpoint",
    "region",
    "access_key_id",
    *SECRET_KEYS,
    "replica_id",
    "advertise_url",
    "token",
    "token_file",
    "max_size",
    "lease_ttl",
    "janitor_interval",
)
# Every variable read here (a later name in a pair wins only when the first is unset).
FLEET_VARS = (
    "FLEET_STORE",
    "FLEET_ENDPOINT",
    "FLEET_REGION",
    "FLEET_ACCESS_KEY_ID",
    "FLEET_SECRET_ACCESS_KEY",
    "FLEET_REPLICA_ID",
    "FLEET_ADVERTISE_URL",
    "FLEET_TOKEN",
    "FLEET_MAX_SIZE",
    "FLEET_LEASE_TTL",
    "FLEET_JANITOR_INTERVAL",
)
# The AWS SDKs' own names, honoured when the FLEET_ ones are not set (a container's usual secret).
AWS_FALLBACKS = {
    "FLEET_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "FLEET_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}
# The keyring item: "s3@fleet" (credentials' <username>@<scope> naming).
KEYRING_SCOPE, KEYRING_USERNAME = "fleet", "s3"


def default_replica_id() -> str:
    """The host name (a pod's name in Kubernetes), cut to what a replica id may hold."""
    name = socket.gethostname().split(".")[0] or "replica"
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).lstrip("._-")
    return (cleaned or "replica")[:63]


def fleet_from_table(
    reader: TableReader, data: Mapping[str, Any], base: FleetConfig, environ: Mapping[str, str]
) -> FleetConfig:
    """``[fleet]`` (``data``) laid over ``base``."""
    prefix = "fleet."
    reader.check_keys(data, FLEET_KEYS, prefix)
    values: dict[str, Any] = {}
    for name in ("store", "endpoint", "region", "access_key_id", "replica_id", "advertise_url"):
        if name in data:
            values[name] = _text(name, reader.string(data, name, prefix), reader.at(prefix + name))
    if "max_size" in data:
        raw = reader.number_or_str(data, "max_size", prefix)
        if isinstance(raw, float):
            raise ConfigError(reader.at(prefix + "max_size"), f"invalid size {raw!r}: expected whole bytes")
        values["max_size"] = parse_size(raw, reader.at(prefix + "max_size"))
    if "lease_ttl" in data:
        at = reader.at(prefix + "lease_ttl")
        seconds = parse_time(reader.number_or_str(data, "lease_ttl", prefix), at)
        values["lease_ttl"] = parse_lease_ttl(seconds, at)
    if "janitor_interval" in data:
        at = reader.at(prefix + "janitor_interval")
        seconds = parse_time(reader.number_or_str(data, "janitor_interval", prefix), at)
        values["janitor_interval"] = parse_janitor_interval(seconds, at)
    given = [key for key in SECRET_KEYS if key in data and data[key] is not False]
    if len(given) > 1:
        raise ConfigError(
            reader.at(prefix + "secret_access_key"),
            f"give exactly one of {', '.join(SECRET_KEYS)} (got {', '.join(given)})",
        )
    if given:
        values.update(_secret_key(reader, data, given[0], environ))
    if "token" in data and "token_file" in data:
        raise ConfigError(reader.at(prefix + "token"), "give token or token_file, not both")
    if "token" in data:
        values["token"] = Secret(_secret_text(data["token"], reader.at(prefix + "token")))
        values["token_file"] = None
    if "token_file" in data:
        path = reader.path(data, "token_file", prefix)
        values["token"] = read_secret_file(path, reader.at(prefix + "token_file"))
        values["token_file"] = str(path)
    return replace(base, **values)


def fleet_from_env(base: FleetConfig, environ: Mapping[str, str]) -> FleetConfig:
    """``base`` with the FLEET_* variables (and the AWS key pair) present in ``environ`` applied."""

    def get(name: str) -> str:
        value = (environ.get(name) or "").strip()
        if not value and name in AWS_FALLBACKS:
            value = (environ.get(AWS_FALLBACKS[name]) or "").strip()
        return value

    values: dict[str, Any] = {}
    for name, var in (
        ("store", "FLEET_STORE"),
        ("endpoint", "FLEET_ENDPOINT"),
        ("region", "FLEET_REGION"),
        ("access_key_id", "FLEET_ACCESS_KEY_ID"),
        ("replica_id", "FLEET_REPLICA_ID"),
        ("advertise_url", "FLEET_ADVERTISE_URL"),
    ):
        if raw := get(var):
            values[name] = _text(name, raw, var)
    if raw := get("FLEET_SECRET_ACCESS_KEY"):
        values.update(
            secret_access_key=Secret(raw), secret_source=SecretSource.SEED_ENV, secret_reference=None
        )
    if raw := get("FLEET_TOKEN"):
        values.update(token=Secret(raw), token_file=None)
    if raw := get("FLEET_MAX_SIZE"):
        values["max_size"] = parse_size(raw, "FLEET_MAX_SIZE")
    if raw := get("FLEET_LEASE_TTL"):
        values["lease_ttl"] = parse_lease_ttl(parse_time(raw, "FLEET_LEASE_TTL"), "FLEET_LEASE_TTL")
    if raw := get("FLEET_JANITOR_INTERVAL"):
        values["janitor_interval"] = parse_janitor_interval(
            parse_time(raw, "FLEET_JANITOR_INTERVAL"), "FLEET_JANITOR_INTERVAL"
        )
    return replace(base, **values) if values else base


def with_default_replica_id(fleet: FleetConfig) -> FleetConfig:
    return fleet if fleet.replica_id or not fleet.enabled else replace(fleet, replica_id=default_replica_id())


def fleet_env_pairs(fleet: FleetConfig) -> list[tuple[str, str]]:
    """The variables that recreate ``fleet`` (secrets inline, as AUTH_REGISTRIES carries passwords)."""
    if not fleet.enabled:
        return []
    defaults = FleetConfig()
    pairs = [("FLEET_STORE", fleet.store)]
    for name, var in (
        ("endpoint", "FLEET_ENDPOINT"),
        ("region", "FLEET_REGION"),
        ("access_key_id", "FLEET_ACCESS_KEY_ID"),
        ("replica_id", "FLEET_REPLICA_ID"),
        ("advertise_url", "FLEET_ADVERTISE_URL"),
    ):
        if getattr(fleet, name) != getattr(defaults, name):
            pairs.append((var, getattr(fleet, name)))
    if fleet.secret_access_key:
        pairs.append(("FLEET_SECRET_ACCESS_KEY", fleet.secret_access_key.reveal()))
    if fleet.token:
        pairs.append(("FLEET_TOKEN", fleet.token.reveal()))
    if fleet.max_size != defaults.max_size:
        pairs.append(("FLEET_MAX_SIZE", format_size(fleet.max_size)))
    if fleet.lease_ttl != defaults.lease_ttl:
        pairs.append(("FLEET_LEASE_TTL", format_time(fleet.lease_ttl)))
    if fleet.janitor_interval != defaults.janitor_interval:
        pairs.append(("FLEET_JANITOR_INTERVAL", format_time(fleet.janitor_interval)))
    return pairs


def fleet_table(fleet: FleetConfig) -> dict[str, Any]:
    """The ``[fleet]`` table for ``fleet`` (secrets inline unless they came from a file, a variable
    named in the file, or the keyring, which are referenced as they were)."""
    defaults = FleetConfig()
    table: dict[str, Any] = {"store": fleet.store}
    for name in ("endpoint", "region", "access_key_id", "replica_id", "advertise_url"):
        if getattr(fleet, name) != getattr(defaults, name):
            table[name] = getattr(fleet, name)
    if fleet.secret_source is SecretSource.FILE:
        table["secret_access_key_file"] = fleet.secret_reference
    elif fleet.secret_source is SecretSource.ENV:
        table["secret_access_key_env"] = fleet.secret_reference
    elif fleet.secret_source is SecretSource.KEYRING:
        table["keyring"] = True
    elif fleet.secret_access_key:
        table["secret_access_key"] = fleet.secret_access_key.reveal()
    if fleet.token_file:
        table["token_file"] = fleet.token_file
    elif fleet.token:
        table["token"] = fleet.token.reveal()
    if fleet.max_size != defaults.max_size:
        table["max_size"] = format_size(fleet.max_size)
    if fleet.lease_ttl != defaults.lease_ttl:
        table["lease_ttl"] = format_time(fleet.lease_ttl)
    if fleet.janitor_interval != defaults.janitor_interval:
        table["janitor_interval"] = format_time(fleet.janitor_interval)
    return table


# The [fleet] keys that hold a secret in clear (the file must then be 0600).
CLEAR_SECRETS = ("secret_access_key", "token")


def _text(name: str, raw: str, where: str) -> str:
    match name:
        case "store":
            # An empty store turns fleet mode off; any other is checked here, where it was given.
            if raw.strip():
                parse_store(raw, where)
            return raw.strip()
        case "endpoint":
            return parse_endpoint(raw, where)
        case "advertise_url":
            return parse_advertise_url(raw, where) if raw.strip() else ""
        case "replica_id":
            return parse_replica_id(raw, where) if raw.strip() else ""
        case _:
            return raw.strip()


def _secret_text(value: object, where: str) -> str:
    # Never echo the value: it is a secret even when it is of the wrong type.
    if not isinstance(value, str) or not value:
        raise ConfigError(where, "must be a non-empty string")
    return value


def _secret_key(
    reader: TableReader, data: Mapping[str, Any], key: str, environ: Mapping[str, str]
) -> dict[str, Any]:
    at = reader.at(f"fleet.{key}")
    value = data[key]
    if key == "secret_access_key":
        return {
            "secret_access_key": Secret(_secret_text(value, at)),
            "secret_source": SecretSource.TOML,
            "secret_reference": None,
        }
    if key == "keyring":
        if value is not True:
            raise ConfigError(at, "must be true or false")
        user = keyring_user(KEYRING_SCOPE, KEYRING_USERNAME)
        secret = resolve_secret(SecretStore.KEYRING, KEYRING_SCOPE, KEYRING_USERNAME, user, environ)
        return {
            "secret_access_key": secret,
            "secret_source": SecretSource.KEYRING,
            "secret_reference": f"{KEYRING_SERVICE}/{user}",
        }
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(at, "must be a non-empty string")
    if key == "secret_access_key_file":
        path = reader.path(data, key, "fleet.")
        return {
            "secret_access_key": read_secret_file(path, at),
            "secret_source": SecretSource.FILE,
            "secret_reference": str(path),
        }
    raw = (environ.get(value) or "").strip()
    if not raw:
        raise SecretUnavailable(at, f"environment variable {value!r} is not set")
    return {"secret_access_key": Secret(raw), "secret_source": SecretSource.ENV, "secret_reference": value}
