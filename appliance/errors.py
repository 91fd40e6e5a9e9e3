"""The appliance's own exception family, converted once at each edge.

* ``ConfigError`` -> a one-line message and exit status 2 on the CLI, a rejected edit on the socket.
* ``RegistryError`` -> the OCI error JSON (``{"errors":[...]}``) with the right HTTP status.
"""

from __future__ import annotations

import json
from enum import StrEnum


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""


class ConfigError(ApplianceError):
    """Bad configuration input. ``where`` names the file/line, env var, flag or key at fault."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


class SecretUnavailable(ConfigError):
    """A credential's secret could not be read (keyring missing, file unreadable, env unset)."""


class ErrorCode(StrEnum):
    """OCI distribution-spec error codes (plus the few Docker adds)."""

    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    PAGINATION_NUMBER_INVALID = "PAGINATION_NUMBER_INVALID"  # distribution's, for a bad ?n=
    SIZE_INVALID = "SIZE_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    # Not in the spec's table, but what distribution answers for upstream trouble.
    UNAVAILABLE = "UNAVAILABLE"


class RegistryError(ApplianceError):
    """An error a registry client should see, in the registry's own language."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        detail: object = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        entry: dict[str, object] = {"code": str(self.code), "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}).encode()


class UpstreamError(ApplianceError):
    """The upstream registry could not be reached or answered nonsense.

    ``status`` is the upstream HTTP status when there was one (None for connection failures).
    """

    def __init__(self, registry: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{registry}: {message}")
        self.registry = registry
        self.message = message
        self.status = status


class IntegrityError(UpstreamError):
    """Bytes from upstream did not match the digest or length they were asked for."""


class UpstreamUnreachable(UpstreamError):
    """The registry itself could not be reached (refused, timed out, TLS failed, no such name).

    The only failure that marks a whole registry down (``health``): a bad answer from a reachable
    registry - a redirect loop, an unusable or refused redirect, a CDN hop that fails - concerns
    one request, not every repository behind the registry.
    """


class UpstreamRefused(UpstreamError):
    """The upstream pointed the engine somewhere it will not go (a redirect the policy refuses)."""
