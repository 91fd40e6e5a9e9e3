"""The table of configuration keys: where a config key is defined.

One row per simple key: its TOML table and name, what kind of value it holds, the model field it sets,
the seed environment variable(s) it maps to and when that is exported, the ``ConfigView`` field that
shows it on the control socket, and whether it may carry a secret.  Every format iterates this table
instead of listing keys of its own: ``toml_read`` (reading and validating), ``toml_render`` (the
commented file of ``config import-env``), ``seed_env`` and ``seed_env_export`` (the variables both
ways), ``toml_edit`` (a file holding a secret is 0600) and ``control/views.py`` (the masked view).
How each *kind* of value reads and writes is in the module of that format.

Adding a simple key is one row here plus the model field (``model.py``); its default is the model
field's default.  A new kind of value also needs its case in each format's conversion.

Not simple key tables, and so hand-written beside their hook in each format:

* ``[[registries]]`` and ``[[credentials]]``: arrays of tables (``toml_read._registries``,
  ``credentials.py``; REGISTRIES and AUTH_REGISTRIES in ``seed_env``/``seed_env_auth``);
* ``allow_clients`` and ``[access]`` (users, tokens, ACL rules): ``access_toml.py``/``access_edit.py``,
  ALLOW_CLIENTS in ``seed_env``;
* ``manifest_cache.tiers``: an array of tables (``toml_read._tiers``), MANIFEST_CACHE_{PRIMARY,
  SECONDARY}_{REGEX,TIME} in ``seed_env``;
* the whole ``[tunnel]`` policy as one value: TUNNEL in ``seed_env``, the view's ``tunnel``;
* ``[fleet]`` (the shared S3 tier): its secrets come from files, variables or the keyring like
  credentials', so ``fleet_read.py`` reads the table and the FLEET_* variables.

Checks across keys of one table (a tunnel ``list`` needs hosts, ``connections_per_source`` is at most
``max_connections``, ``tls_cert_file`` goes with ``tls_key_file``) are the tables' ``check`` hooks
(and ``seed_env`` checks TLS_CERT_FILE with TLS_KEY_FILE).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from appliance.config.model import Config, Limits, TunnelMode, TunnelPolicy
from appliance.config.values import (
    parse_connection_limit,
    parse_control_group,
    parse_event_queue,
    parse_log_format,
    parse_pull_ahead,
    parse_upstream_proxy,
)
from appliance.errors import ConfigError


class Kind(Enum):
    """What a key's value is, and so how each format reads and writes it."""

    PATH = "path"  # a file or directory (TOML: relative to the file's directory)
    BOOL = "bool"  # true/false (env: true/1/yes/on, false/0/no/off)
    SIZE = "size"  # bytes, nginx size syntax (32g, 500m) or an integer
    TIME = "time"  # seconds, nginx time syntax (1h30m, 500ms) or a number
    WHOLE = "whole"  # an integer, checked by the key's ``parse``
    TEXT = "text"  # a string, checked (and converted) by the key's ``parse`` if it has one
    LISTEN = "listen"  # HOST:PORT or [V6]:PORT, a (host, port) pair
    RESOLVE = "resolve"  # a list of HOST[:PORT]=ADDR:PORT overrides
    TUNNEL_MODE = "tunnel_mode"  # default, all, none, list
    TUNNEL_HOSTS = "tunnel_hosts"  # a list of host or host:port patterns


class Export(Enum):
    """Whether ``config export-env`` writes the key, and what it says when it cannot."""

    ALWAYS = "always"  # the seed's variables: always written, so the list reads like the seed's
    CHANGED = "changed"  # written when the value differs from the built-in default
    HOOK = "hook"  # written by hand-written code covering the whole table (TUNNEL)
    NONE = "none"  # no variable: a warning when the value differs from the default
    FLAG = "flag"  # no variable, but a command-line flag: the warning says so
    LOCAL = "local"  # no variable: a path on this machine (a container mounts its own), never warned


class Mask(Enum):
    """How a value that may carry a secret is shown outside the engine (views, exported env)."""

    NONE = "none"
    URL_PASSWORD = "url_password"  # a URL whose password part is replaced by ``********``


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One simple configuration key (see the module docstring)."""

    table: str  # the TOML table: "" for the top level, else a section such as "cache"
    name: str  # the key in that table, and the model field it sets (unless ``into`` says otherwise)
    kind: Kind
    comment: str = ""  # shown above the key in the rendered file
    env: tuple[str, ...] = ()  # variables read, in order (a later one wins); the first is exported
    export: Export = Export.NONE
    parse: Callable[[Any, str], Any] | None = None  # WHOLE and TEXT: raw value, where -> value
    view: str = ""  # the ``protocol.ConfigView`` field that shows it ("" = not shown)
    mask: Mask = Mask.NONE
    into: tuple[str, ...] = ()  # model fields when not ``name``: a LISTEN key sets host and port

    @property
    def dotted(self) -> str:
        """The key as errors and warnings name it: ``cache.max_size``."""
        return f"{self.table}.{self.name}" if self.table else self.name

    @property
    def fields(self) -> tuple[str, ...]:
        return self.into or (self.name,)


@dataclass(frozen=True, slots=True)
class Table:
    """A TOML table of simple keys: the top level ("") or a section, which is the model field ``name``."""

    name: str
    comment: str = ""  # shown at the top of the rendered table
    # Keys of this table read by hand-written code (see the module docstring).
    hand_written: tuple[str, ...] = ()
    # Checks across the table's keys: (where, the raw TOML table, the new value) -> the value to keep.
    # The value is the section's model object, or the whole ``Config`` for the top level.
    check: Callable[[Callable[[str], str], Mapping[str, Any], Any], Any] | None = None


def _check_tls_pair(at: Callable[[str], str], data: Mapping[str, Any], config: Any) -> Any:
    if ("tls_cert_file" in data) != ("tls_key_file" in data):
        raise ConfigError(at("tls_cert_file"), "tls_cert_file and tls_key_file go together")
    return config


def _check_tunnel(at: Callable[[str], str], data: Mapping[str, Any], policy: TunnelPolicy) -> TunnelPolicy:
    if policy.mode is TunnelMode.LIST and not policy.hosts:
        raise ConfigError(at("tunnel.hosts"), 'mode = "list" needs at least one host')
    # Hosts mean something only to a list; a file that switches mode away from it drops them.
    return policy if policy.mode is TunnelMode.LIST else replace(policy, hosts=())


def _check_limits(at: Callable[[str], str], data: Mapping[str, Any], limits: Limits) -> Limits:
    if limits.connections_per_source > limits.max_connections:
        raise ConfigError(
            at("limits.connections_per_source"),
            f"{limits.connections_per_source} is more than max_connections ({limits.max_connections})",
        )
    return limits


TABLES = (
    Table(
        "",
        # [fleet] holds secrets read from files, variables or the keyring: config/fleet_read.py.
        hand_written=("registries", "credentials", "allow_clients", "access", "fleet"),
        check=_check_tls_pair,
    ),
    Table("cache"),
    Table("manifest_cache", hand_written=("tiers",)),
    Table("timeouts", comment="SEND_TIMEOUT, CLIENT_BODY_TIMEOUT, ... (nginx time)."),
    Table("tunnel", check=_check_tunnel),
    Table("limits", check=_check_limits),
)

KEYS = (
    # -- top level ------------------------------------------------------------------------------------
    ConfigKey(
        "",
        "listen",
        Kind.LISTEN,
        "Where clients connect (HTTPS_PROXY=http://this-host:3128).",
        env=("LISTEN",),
        export=Export.CHANGED,
        view="listen",
        into=("listen_host", "listen_port"),
    ),
    ConfigKey(
        "",
        "tls_listen",
        Kind.LISTEN,
        "TLS_LISTEN: a second listener speaking TLS (mirror mode over https, an https proxy).",
        env=("TLS_LISTEN",),
        export=Export.CHANGED,
    ),
    ConfigKey(
        "",
        "tls_cert_file",
        Kind.PATH,
        "TLS_CERT_FILE: its certificate (default: one from the CA per SNI name).",
        env=("TLS_CERT_FILE",),
        export=Export.CHANGED,
    ),
    ConfigKey(
        "",
        "tls_key_file",
        Kind.PATH,
        "TLS_KEY_FILE: its key (tls_cert_file and tls_key_file go together).",
        env=("TLS_KEY_FILE",),
        export=Export.CHANGED,
    ),
    ConfigKey("", "cache_dir", Kind.PATH, "Blob and manifest cache.", export=Export.LOCAL, view="cache_dir"),
    ConfigKey(
        "",
        "ca_dir",
        Kind.PATH,
        "The interception CA (keep it: clients trust it).",
        export=Export.LOCAL,
        view="ca_dir",
    ),
    ConfigKey(
        "",
        "control_socket",
        Kind.PATH,
        "Unix socket for `appliance status` and the dashboard.",
        export=Export.LOCAL,
        view="control_socket",
    ),
    ConfigKey(
        "",
        "control_group",
        Kind.TEXT,
        "APPLIANCE_CONTROL_GROUP: a group allowed on the control socket (it is then 0660).",
        env=("APPLIANCE_CONTROL_GROUP",),
        export=Export.CHANGED,
        parse=parse_control_group,
    ),
    ConfigKey(
        "",
        "event_queue",
        Kind.WHOLE,
        "APPLIANCE_EVENT_QUEUE: events a stream subscriber may fall behind before the oldest drop.",
        env=("APPLIANCE_EVENT_QUEUE",),
        export=Export.CHANGED,
        parse=parse_event_queue,
    ),
    ConfigKey(
        "",
        "ca_cert_file",
        Kind.PATH,
        "CA_CRT_FILE: bring your own CA certificate (default: ca_dir/ca.crt).",
        env=("CA_CRT_FILE",),
        export=Export.CHANGED,
    ),
    ConfigKey(
        "",
        "ca_key_file",
        Kind.PATH,
        "CA_KEY_FILE: its key (default: ca_dir/ca.key).",
        env=("CA_KEY_FILE",),
        export=Export.CHANGED,
    ),
    ConfigKey(
        "",
        "allow_push",
        Kind.BOOL,
        "ALLOW_PUSH: let POST/PUT/DELETE through.",
        env=("ALLOW_PUSH",),
        export=Export.ALWAYS,
        view="allow_push",
    ),
    ConfigKey(
        "",
        "verify_ssl",
        Kind.BOOL,
        "VERIFY_SSL: verify upstream certificates.",
        env=("VERIFY_SSL",),
        export=Export.ALWAYS,
        view="verify_ssl",
    ),
    ConfigKey(
        "",
        "disable_ipv6",
        Kind.BOOL,
        "DISABLE_IPV6: connect over IPv4 only.",
        env=("DISABLE_IPV6",),
        export=Export.ALWAYS,
        view="disable_ipv6",
    ),
    ConfigKey(
        "", "upstream_ca", Kind.PATH, "Extra CA bundle for upstream TLS (--upstream-ca).", export=Export.FLAG
    ),
    ConfigKey(
        "",
        "upstream_proxy",
        Kind.TEXT,
        "UPSTREAM_PROXY: corporate proxy for the appliance's own upstream traffic.",
        env=("UPSTREAM_PROXY", "APPLIANCE_UPSTREAM_PROXY"),
        export=Export.CHANGED,
        parse=parse_upstream_proxy,
        view="upstream_proxy",
        mask=Mask.URL_PASSWORD,
    ),
    ConfigKey(
        "", "debug", Kind.BOOL, "DEBUG: verbose logging.", env=("DEBUG",), export=Export.ALWAYS, view="debug"
    ),
    ConfigKey(
        "",
        "log_format",
        Kind.TEXT,
        "LOG_FORMAT: text or json.",
        env=("LOG_FORMAT",),
        export=Export.CHANGED,
        parse=parse_log_format,
        view="log_format",
    ),
    ConfigKey("", "resolve", Kind.RESOLVE, "--resolve HOST[:PORT]=ADDR:PORT entries.", export=Export.FLAG),
    # -- [cache] --------------------------------------------------------------------------------------
    ConfigKey(
        "cache",
        "max_size",
        Kind.SIZE,
        "CACHE_MAX_SIZE (nginx size: 32g, 500m, 1024k, bytes).",
        env=("CACHE_MAX_SIZE",),
        export=Export.ALWAYS,
        view="cache_max_size",
    ),
    ConfigKey(
        "cache",
        "inactive",
        Kind.TIME,
        "CACHE_INACTIVE: evict what was not used for this long (nginx time).",
        env=("CACHE_INACTIVE",),
        export=Export.ALWAYS,
        view="cache_inactive",
    ),
    ConfigKey(
        "cache",
        "min_free_disk",
        Kind.SIZE,
        "Stop filling the cache below this much free disk.",
        view="cache_min_free_disk",
    ),
    ConfigKey(
        "cache",
        "pull_ahead",
        Kind.WHOLE,
        "Once a client starts on an image's layers, fetch its other blobs this many at a time (0: off).",
        env=("APPLIANCE_PULL_AHEAD",),
        export=Export.CHANGED,
        parse=parse_pull_ahead,
    ),
    # -- [manifest_cache] -----------------------------------------------------------------------------
    ConfigKey(
        "manifest_cache",
        "enabled",
        Kind.BOOL,
        "ENABLE_MANIFEST_CACHE: cache tag manifests.",
        env=("ENABLE_MANIFEST_CACHE",),
        export=Export.ALWAYS,
        view="manifest_cache",
    ),
    ConfigKey(
        "manifest_cache",
        "default_ttl",
        Kind.TIME,
        "MANIFEST_CACHE_DEFAULT_TIME: tags no tier matches.",
        env=("MANIFEST_CACHE_DEFAULT_TIME",),
        export=Export.ALWAYS,
    ),
    # -- [timeouts]: the seed's nginx timeouts, NAME_TIMEOUT ------------------------------------------
    ConfigKey("timeouts", "send", Kind.TIME, env=("SEND_TIMEOUT",), export=Export.ALWAYS),
    ConfigKey("timeouts", "client_body", Kind.TIME, env=("CLIENT_BODY_TIMEOUT",), export=Export.ALWAYS),
    ConfigKey("timeouts", "client_header", Kind.TIME, env=("CLIENT_HEADER_TIMEOUT",), export=Export.ALWAYS),
    ConfigKey("timeouts", "keepalive", Kind.TIME, env=("KEEPALIVE_TIMEOUT",), export=Export.ALWAYS),
    ConfigKey("timeouts", "proxy_read", Kind.TIME, env=("PROXY_READ_TIMEOUT",), export=Export.ALWAYS),
    ConfigKey("timeouts", "proxy_connect", Kind.TIME, env=("PROXY_CONNECT_TIMEOUT",), export=Export.ALWAYS),
    ConfigKey("timeouts", "proxy_send", Kind.TIME, env=("PROXY_SEND_TIMEOUT",), export=Export.ALWAYS),
    ConfigKey(
        "timeouts", "proxy_connect_read", Kind.TIME, env=("PROXY_CONNECT_READ_TIMEOUT",), export=Export.ALWAYS
    ),
    ConfigKey(
        "timeouts",
        "proxy_connect_connect",
        Kind.TIME,
        env=("PROXY_CONNECT_CONNECT_TIMEOUT",),
        export=Export.ALWAYS,
    ),
    ConfigKey(
        "timeouts", "proxy_connect_send", Kind.TIME, env=("PROXY_CONNECT_SEND_TIMEOUT",), export=Export.ALWAYS
    ),
    # -- [tunnel] (TUNNEL sets the whole table: hand-written) -----------------------------------------
    ConfigKey(
        "tunnel",
        "mode",
        Kind.TUNNEL_MODE,
        "TUNNEL: what a CONNECT to a non-registry host may reach: default, all, none, list.",
        export=Export.HOOK,
    ),
    ConfigKey(
        "tunnel",
        "hosts",
        Kind.TUNNEL_HOSTS,
        'For mode = "list": host or host:port (*.example.com allowed).',
        export=Export.HOOK,
    ),
    # -- [limits] -------------------------------------------------------------------------------------
    ConfigKey(
        "limits",
        "connections_per_source",
        Kind.WHOLE,
        "Client connections one IP address may hold open at once (more are refused with 503).",
        parse=parse_connection_limit,
    ),
    ConfigKey(
        "limits",
        "max_connections",
        Kind.WHOLE,
        "Client connections in all (bounds the memory stalled clients can hold).",
        parse=parse_connection_limit,
    ),
)


def keys_of(table: str) -> tuple[ConfigKey, ...]:
    return tuple(key for key in KEYS if key.table == table)


def table_keys(table: Table) -> tuple[str, ...]:
    """Every key valid in the TOML ``table``: its simple keys, the sections (top level) and the rest."""
    sections = tuple(t.name for t in TABLES if t.name) if not table.name else ()
    return (*(key.name for key in keys_of(table.name)), *sections, *table.hand_written)


def get(config: Config, key: ConfigKey) -> Any:
    """The key's value in ``config``; a (host, port) pair for a key set into two fields."""
    owner: Any = getattr(config, key.table) if key.table else config
    if key.into:
        return tuple(getattr(owner, name) for name in key.into)
    return getattr(owner, key.name)


def with_value(config: Config, key: ConfigKey, value: Any) -> Config:
    """``config`` with the key set to ``value``."""
    changes = dict(zip(key.into, value, strict=True)) if key.into else {key.name: value}
    if not key.table:
        return replace(config, **changes)
    return replace(config, **{key.table: replace(getattr(config, key.table), **changes)})


def env_vars() -> tuple[str, ...]:
    """Every variable a key of the table reads."""
    return tuple(name for key in KEYS for name in key.env)
