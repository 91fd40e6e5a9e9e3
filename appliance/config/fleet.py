"""``[fleet]``: several replicas sharing one cache on S3-compatible storage (issue 18), as one value.

``FleetConfig`` is what the engine's fleet tier is built from.  The ``[fleet]`` table and the FLEET_*
variables are read by ``fleet_read`` (secrets come from the file, a file, a variable or the keyring,
as upstream credentials do); this module holds the record and the checks that need no I/O.  Fleet mode
is off while ``store`` is empty.  The S3 secret key and the fleet token are ``Secret`` values: they
never appear in a repr, an error or a log line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from appliance.config.secret import Secret
from appliance.errors import ConfigError

DEFAULT_REGION = "us-east-1"
DEFAULT_LEASE_TTL = 30.0
# A lease is renewed every TTL/3; below a few seconds a GC pause or a slow PUT loses it.
MIN_LEASE_TTL = 3.0
# How often every replica asks for ``janitor.lease`` and, when it holds it, runs the janitor.
DEFAULT_JANITOR_INTERVAL = 60.0
# Each run lists the whole prefix: more often than every second buys nothing and costs LISTs.
MIN_JANITOR_INTERVAL = 1.0
# S3's own bucket naming rule (3-63 chars of lower-case letters, digits, dots and hyphens).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
# Replica ids name report objects (``reports/<id>.json``) and lease owners: nothing that climbs out.
_REPLICA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")


class SecretSource(StrEnum):
    """Where the S3 secret access key was read from (shown in summaries instead of the secret)."""

    NONE = "none"  # no static keys: botocore's default chain (instance role, web identity)
    TOML = "toml"  # secret_access_key in the config file
    FILE = "file"  # secret_access_key_file
    ENV = "env"  # secret_access_key_env names a variable
    KEYRING = "keyring"  # keyring = true
    SEED_ENV = "seed-env"  # FLEET_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """``s3://bucket/prefix`` split; ``prefix`` is "" or ends with "/"."""

    bucket: str
    prefix: str

    def key(self, name: str) -> str:
        """The object key of ``name`` (``blobs/sha256/<hex>``) under the prefix."""
        return self.prefix + name


def parse_store(value: str, where: str) -> StoreUrl:
    parts = urlsplit(value.strip())
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(where, f"invalid store {value!r}: expected s3://bucket or s3://bucket/prefix")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(where, f"invalid store {value!r}: no credentials, query or fragment in the URL")
    bucket = parts.netloc
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(where, f"invalid bucket name {bucket!r}")
    segments = [segment for segment in parts.path.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise ConfigError(where, f"invalid store {value!r}: '.' and '..' are not prefix segments")
    return StoreUrl(bucket, "".join(f"{segment}/" for segment in segments))


def parse_endpoint(value: str, where: str) -> str:
    """An S3 endpoint URL (http or https, no path), or "" for AWS's own."""
    text = value.strip()
    if not text:
        return ""
    return _origin_url(text, where, "endpoint", "http(s)://host[:port]")


def parse_advertise_url(value: str, where: str) -> str:
    return _origin_url(value.strip(), where, "advertise_url", "http(s)://host:port")


def _origin_url(text: str, where: str, key: str, shape: str) -> str:
    """An http(s) origin with nothing after it: the S3 endpoint, or where peers reach a replica."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(where, f"invalid {key} {text!r}: expected {shape}")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ConfigError(where, f"invalid {key} {text!r}: no credentials, path, query or fragment")
    return text.rstrip("/")


def parse_replica_id(value: str, where: str) -> str:
    text = value.strip()
    if not _REPLICA_RE.fullmatch(text):
        raise ConfigError(
            where, f"invalid replica_id {text!r}: 1-63 letters, digits, '.', '_' or '-', not first"
        )
    return text


def parse_lease_ttl(seconds: float, where: str) -> float:
    if seconds < MIN_LEASE_TTL:
        raise ConfigError(where, f"lease_ttl must be at least {MIN_LEASE_TTL:g}s (got {seconds:g}s)")
    return seconds


def parse_janitor_interval(seconds: float, where: str) -> float:
    if seconds < MIN_JANITOR_INTERVAL:
        raise ConfigError(
            where, f"janitor_interval must be at least {MIN_JANITOR_INTERVAL:g}s (got {seconds:g}s)"
        )
    return seconds


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """The fleet settings (``[fleet]``); ``store == ""`` means fleet mode is off."""

    store: str = ""  # s3://bucket/prefix
    endpoint: str = ""  # S3 endpoint URL; "" = AWS
    region: str = DEFAULT_REGION
    access_key_id: str = ""
    secret_access_key: Secret = field(default_factory=lambda: Secret(""))
    secret_source: SecretSource = SecretSource.NONE
    # The file path, variable name or keyring user the secret came from (not secret).
    secret_reference: str | None = None
    replica_id: str = ""  # "" until read: the loader fills in the host name
    advertise_url: str = ""  # where peers reach this replica's /_fleet/v1/ endpoint
    token: Secret = field(default_factory=lambda: Secret(""))
    token_file: str | None = None  # where the token was read from, if a file (not secret)
    max_size: int = 0  # bytes the bucket may hold; 0 = unbounded
    lease_ttl: float = DEFAULT_LEASE_TTL
    janitor_interval: float = DEFAULT_JANITOR_INTERVAL  # seconds between janitor runs

    @property
    def enabled(self) -> bool:
        return bool(self.store)

    @property
    def location(self) -> StoreUrl:
        return parse_store(self.store, "fleet.store")

    def checked(self, where: str = "fleet") -> FleetConfig:
        """``self`` when it can run (fleet off, or every setting fleet mode needs is there)."""
        if not self.enabled:
            return self
        parse_store(self.store, f"{where}.store")
        if not self.token:
            raise ConfigError(
                f"{where}.token", "fleet mode needs the shared token (token, token_file or FLEET_TOKEN)"
            )
        if not self.advertise_url:
            raise ConfigError(
                f"{where}.advertise_url",
                "fleet mode needs the address peers reach this replica at (advertise_url or "
                "FLEET_ADVERTISE_URL)",
            )
        if bool(self.access_key_id) != bool(self.secret_access_key):
            missing = "secret_access_key" if self.access_key_id else "access_key_id"
            raise ConfigError(
                f"{where}.{missing}", "give both access_key_id and the secret access key, or neither"
            )
        if not self.replica_id:
            raise ConfigError(f"{where}.replica_id", "required (default: the host name)")
        return self
