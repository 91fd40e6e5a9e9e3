"""Configuration over the socket: the masked views, the edits a client sends, and the answer to one."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from appliance.protocol.codec import Payload

MASK = "********"


class SecretStoreName(StrEnum):
    """Where ``credential set`` keeps the password."""

    TOML = "toml"
    KEYRING = "keyring"
    FILE = "file"


# --- views -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryView(Payload):
    host: str
    aliases: tuple[str, ...] = ()
    auth_hosts: tuple[str, ...] = ()
    scheme: str = "https"
    insecure: bool = False
    ca_file: str | None = None
    allow_push: bool | None = None  # None: the global setting
    manifest_cache: bool | None = None
    tag_ttl: float | None = None


@dataclass(frozen=True, slots=True)
class CredentialView(Payload):
    """A credential with its secret masked: the password itself never crosses the socket outward."""

    scope: str
    username: str
    store: str  # toml, keyring, file, env, seed-env
    reference: str | None = None  # the file path, env var or keyring item (not secret)
    password: str = MASK


@dataclass(frozen=True, slots=True)
class ConfigView(Payload):
    config_path: str | None
    editable: bool  # whether edits can be written (a config file is known)
    listen: str
    cache_dir: str
    ca_dir: str
    control_socket: str
    cache_max_size: int
    cache_inactive: float
    cache_min_free_disk: int
    allow_push: bool
    verify_ssl: bool
    disable_ipv6: bool
    manifest_cache: bool
    tunnel: str
    upstream_proxy: str | None  # password masked
    log_format: str
    debug: bool
    registries: tuple[RegistryView, ...] = ()
    credentials: tuple[CredentialView, ...] = ()


@dataclass(frozen=True, slots=True)
class EnvPair(Payload):
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class EnvView(Payload):
    """The configuration in the seed's env-var format; passwords masked."""

    pairs: tuple[EnvPair, ...]
    shell: str  # ``KEY=value`` lines, quoted for a shell
    warnings: tuple[str, ...] = ()


# --- edits -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryEdit(Payload):
    """Add a registry (``values`` must hold ``host``) or change one (``unset`` removes keys).

    Keys are those of a ``[[registries]]`` table in the TOML file (host, aliases, auth_hosts, scheme,
    insecure, ca_file, allow_push, manifest_cache, tag_ttl); the engine validates them.
    """

    values: dict[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CredentialEdit(Payload):
    scope: str  # host[:port] or host[:port]/repository/prefix
    username: str
    store: SecretStoreName = SecretStoreName.TOML
    password: str | None = field(default=None, repr=False)  # toml and keyring stores
    reference: str | None = None  # the password file, for the file store


@dataclass(frozen=True, slots=True)
class ConfigChange(Payload):
    """The answer to an accepted edit or reload."""

    config_path: str
    applied: bool  # the running engine uses the new configuration
    message: str
    warnings: tuple[str, ...] = ()
    restart_required: tuple[str, ...] = ()  # settings that change only after a restart
