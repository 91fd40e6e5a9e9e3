"""The ``status`` answer: version, uptime, listen addresses, the CA, and each registry's health."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from appliance.protocol.codec import Payload


class RegistryHealth(StrEnum):
    UNKNOWN = "unknown"  # no request since start
    OK = "ok"
    DEGRADED = "degraded"  # the most recent upstream outcome was an error
    RATE_LIMITED = "rate-limited"  # the registry told us to back off


@dataclass(frozen=True, slots=True)
class RateLimit(Payload):
    """What a registry last said about its pull quota (Docker Hub's ``ratelimit-*`` headers)."""

    limit: int | None = None
    remaining: int | None = None
    window: int | None = None  # seconds
    source: str | None = None
    blocked_until: float | None = None  # epoch seconds; set after a 429
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RegistryStatus(Payload):
    host: str
    aliases: tuple[str, ...] = ()
    scheme: str = "https"
    health: RegistryHealth = RegistryHealth.UNKNOWN
    requests: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_at: float | None = None
    last_ok_at: float | None = None
    rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class CaInfo(Payload):
    fingerprint_sha256: str
    not_after: float  # epoch seconds
    days_left: int
    cert_path: str = ""


@dataclass(frozen=True, slots=True)
class Status(Payload):
    api_version: int
    version: str
    pid: int
    started: float  # epoch seconds
    uptime: float
    listen: tuple[str, ...]
    ca: CaInfo
    registries: tuple[RegistryStatus, ...] = ()
    docker_hub_rate_limit: RateLimit | None = None
    config_path: str | None = None
    control_socket: str = ""
