"""The configuration model: immutable, typed, parsed once.

Everything the engine needs is in one ``Config`` value.  It is built by ``config.load.load_config``
from, lowest to highest precedence: built-in defaults < TOML file < seed environment variables <
command-line flags.  Nothing in the engine reads the environment or a file for settings afterwards;
a hot reload builds a new ``Config`` and swaps it in whole.

Secrets are held in ``Secret`` values, whose ``repr``/``str`` never show the secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from appliance.config.access import AccessConfig, Network
from appliance.config.fleet import FleetConfig
from appliance.config.secret import Secret as Secret  # re-exported: credentials hold them

DOCKER_HUB_HOST = "registry-1.docker.io"
DOCKER_HUB_AUTH_HOST = "auth.docker.io"
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io")
# rpardini 0.7.0's default REGISTRIES.
DEFAULT_EXTRA_REGISTRIES = ("registry.k8s.io", "gcr.io", "quay.io", "ghcr.io")
GIB = 1024**3
DAY = 86400.0


class SecretStore(StrEnum):
    """Where a credential's secret lives."""

    TOML = "toml"  # inline in the config file (file written 0600)
    KEYRING = "keyring"  # OS keyring; the TOML holds only a reference
    FILE = "file"  # password_file, e.g. a Docker/Kubernetes secret
    ENV = "env"  # an environment variable named in the TOML
    SEED_ENV = "seed-env"  # came from AUTH_REGISTRIES


@dataclass(frozen=True, slots=True)
class Credential:
    """Upstream credentials for a registry host, or for a repository prefix within a host.

    ``scope`` is ``host[:port]`` or ``host[:port]/repo/prefix`` (a trailing ``/*`` is accepted and
    dropped when parsed).  A host may be a registry's own host or one of its auth hosts
    (``auth.docker.io`` means Docker Hub, as in the seed), or a separate token server's host, whose
    credential goes with token requests to that host only (``auth.realm_credential``).
    """

    scope: str
    username: str
    password: Secret
    store: SecretStore = SecretStore.TOML
    # The keyring service/user, file path or env var name the secret was read from (not secret).
    reference: str | None = None

    @property
    def host(self) -> str:
        return self.scope.split("/", 1)[0]

    @property
    def repository_prefix(self) -> str | None:
        parts = self.scope.split("/", 1)
        return parts[1] if len(parts) == 2 and parts[1] else None


class Scheme(StrEnum):
    HTTPS = "https"
    HTTP = "http"


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """One upstream registry the appliance intercepts (MITM) and serves (mirror mode).

    ``host`` is the name clients use: what they send in ``CONNECT host:port`` (the port is kept when
    it is not 443) and the ``Host`` header.  ``None`` for an optional setting means "inherit the
    global value".
    """

    host: str
    aliases: tuple[str, ...] = ()  # other names for the same registry (docker.io for Docker Hub)
    auth_hosts: tuple[str, ...] = ()  # token realms credentials may be sent to, besides ``host``
    scheme: Scheme = Scheme.HTTPS
    insecure: bool = False  # skip upstream certificate verification for this registry only
    ca_file: Path | None = None  # extra CA bundle for this registry's upstream TLS
    allow_push: bool | None = None
    manifest_cache: bool | None = None  # tag-manifest caching on/off for this registry
    tag_ttl: float | None = None  # seconds; overrides the tier TTLs for this registry's tags

    @property
    def hostname(self) -> str:
        return split_host_port(self.host)[0]

    @property
    def port(self) -> int:
        port = split_host_port(self.host)[1]
        if port is not None:
            return port
        return 443 if self.scheme is Scheme.HTTPS else 80

    def names(self) -> tuple[str, ...]:
        return (self.host, *self.aliases)


@dataclass(frozen=True, slots=True)
class ManifestTier:
    """A tag-manifest cache tier: tags matching ``regex`` (anchored at the tag start) live ``ttl``."""

    name: str
    regex: str
    ttl: float

    def matches(self, tag: str) -> bool:
        return re.match(self.regex, tag) is not None


@dataclass(frozen=True, slots=True)
class ManifestCachePolicy:
    """The seed's ENABLE_MANIFEST_CACHE tiers.  Manifests by digest are always cached."""

    enabled: bool = False
    tiers: tuple[ManifestTier, ...] = (
        ManifestTier("primary", r"(stable|nightly|production|test)", 600.0),
        ManifestTier("secondary", r"(.*)(\d|\.)+(.*)(\d|\.)+(.*)(\d|\.)+", 60 * DAY),
    )
    default_ttl: float = 3600.0

    def ttl_for(self, tag: str) -> float:
        """Seconds a tag manifest stays fresh (0 when tag caching is off)."""
        if not self.enabled:
            return 0.0
        for tier in self.tiers:
            if tier.matches(tag):
                return tier.ttl
        return self.default_ttl


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds, named after the seed's env vars (SEND_TIMEOUT -> send, ...)."""

    send: float = 60.0
    client_body: float = 60.0
    # The head deadline: a request head (or a CONNECT) must be complete this long after the
    # connection opens, or after its first byte on a kept-alive connection (issue 15: 30 s, below
    # nginx's 60 s, so a slowloris holds a slot half as long).
    client_header: float = 30.0
    keepalive: float = 300.0
    proxy_read: float = 60.0
    proxy_connect: float = 60.0
    proxy_send: float = 60.0
    proxy_connect_read: float = 60.0
    proxy_connect_connect: float = 60.0
    proxy_connect_send: float = 60.0


class TunnelMode(StrEnum):
    DEFAULT = "default"  # port 443 only, never to loopback/link-local/private-to-us addresses
    ALL = "all"  # any host, any port (the seed's behaviour) - still never the appliance itself
    NONE = "none"  # nothing but intercepted registries
    LIST = "list"  # only the hosts in TunnelPolicy.hosts


@dataclass(frozen=True, slots=True)
class TunnelPolicy:
    """What a CONNECT to a host the appliance does not intercept may reach."""

    mode: TunnelMode = TunnelMode.DEFAULT
    hosts: tuple[str, ...] = ()  # for LIST: "host" or "host:port" ("*.example.com" allowed)


@dataclass(frozen=True, slots=True)
class Limits:
    """How many client connections the front door holds at once (memory is bounded by these)."""

    connections_per_source: int = 256  # from one client IP address; a NAT looks like one client
    # In all.  A stalled MITM tunnel costs ~62 KB: 1024 of them held 126 MB of RSS (measured), under
    # the 150 MB the appliance is held to; cut at the head deadline, the memory goes back (70 MB).
    max_connections: int = 1024


@dataclass(frozen=True, slots=True)
class ResolveOverride:
    """``--resolve HOST[:PORT]=ADDR:PORT``: connect to ADDR:PORT, keep HOST for SNI and ``Host``."""

    host: str
    port: int | None  # None: any port
    address: str
    address_port: int


@dataclass(frozen=True, slots=True)
class CacheConfig:
    max_size: int = 32 * GIB  # CACHE_MAX_SIZE, bytes, hard cap on disk
    inactive: float = 60 * DAY  # CACHE_INACTIVE, seconds
    min_free_disk: int = 1 * GIB  # stop filling (pass through) below this much free disk
    # Once a client asks for a blob of an image manifest it was just served, fill the manifest's
    # other blobs this many at a time without waiting to be asked (0: off).  See pullahead.py.
    pull_ahead: int = 4


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class Config:
    listen_host: str = "0.0.0.0"
    listen_port: int = 3128
    # An optional second listener speaking TLS (mirror mode for clients that insist on https).
    tls_listen: tuple[str, int] | None = None
    tls_cert_file: Path | None = None  # default: a certificate from the appliance's CA per SNI name
    tls_key_file: Path | None = None
    cache_dir: Path = Path("cache")
    ca_dir: Path = Path("ca")
    control_socket: Path = Path("control.sock")
    control_group: str | None = None  # group allowed on the control socket (it is then 0660)
    event_queue: int = 10_000  # events a stream subscriber may fall behind before the oldest drop
    ca_cert_file: Path | None = None  # CA_CRT_FILE (default: ca_dir/ca.crt)
    ca_key_file: Path | None = None  # CA_KEY_FILE (default: ca_dir/ca.key)
    registries: tuple[RegistryConfig, ...] = ()
    credentials: tuple[Credential, ...] = ()
    cache: CacheConfig = field(default_factory=CacheConfig)
    manifest_cache: ManifestCachePolicy = field(default_factory=ManifestCachePolicy)
    allow_push: bool = False
    verify_ssl: bool = True
    disable_ipv6: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    tunnel: TunnelPolicy = field(default_factory=TunnelPolicy)
    limits: Limits = field(default_factory=Limits)
    resolve: tuple[ResolveOverride, ...] = ()
    # Source networks allowed to connect at all; None: private networks only (access/network.py).
    allow_clients: tuple[Network, ...] | None = None
    access: AccessConfig = field(default_factory=AccessConfig)  # client identities and ACL rules
    upstream_ca: Path | None = None
    upstream_proxy: str | None = None  # http://[user:pass@]host:port for the appliance's own traffic
    debug: bool = False
    log_format: LogFormat = LogFormat.TEXT
    fleet: FleetConfig = field(default_factory=FleetConfig)  # [fleet]: the shared S3 tier (issue 18)
    config_path: Path | None = None  # the TOML file this came from, if any

    @property
    def ca_cert_path(self) -> Path:
        return self.ca_cert_file or self.ca_dir / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.ca_key_file or self.ca_dir / "ca.key"

    def registry_for(self, name: str) -> RegistryConfig | None:
        """The registry a client-facing name (``host``, ``host:port`` or alias) refers to.

        ``host:443`` is the same as ``host`` for HTTPS registries.
        """
        wanted = normalize_host(name)
        for registry in self.registries:
            for candidate in registry.names():
                if normalize_host(candidate) == wanted:
                    return registry
            if registry.scheme is Scheme.HTTPS and wanted == f"{registry.host}:443":
                return registry
        return None

    def effective_allow_push(self, registry: RegistryConfig) -> bool:
        return self.allow_push if registry.allow_push is None else registry.allow_push


def split_host_port(value: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port or None)."""
    if value.startswith("["):
        end = value.find("]")
        host = value[1:end]
        rest = value[end + 1 :]
        return host, int(rest[1:]) if rest.startswith(":") else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, int(port)
    return value, None


def normalize_host(value: str) -> str:
    """Lower-case, strip a trailing dot and the default HTTPS port."""
    value = value.strip().lower().rstrip(".")
    if value.endswith(":443"):
        value = value[: -len(":443")]
    return value


def docker_hub() -> RegistryConfig:
    """Docker Hub, always intercepted."""
    return RegistryConfig(
        host=DOCKER_HUB_HOST,
        aliases=DOCKER_HUB_ALIASES,
        auth_hosts=(DOCKER_HUB_AUTH_HOST,),
    )
