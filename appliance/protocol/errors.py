"""The error envelope: ``{"error": {"code", "message", "where"}}`` and the HTTP status of each code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from appliance.protocol.codec import Payload, ProtocolError


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"  # malformed body or parameters
    INVALID_CONFIG = "invalid_config"  # the edit was validated and refused; nothing changed
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # e.g. another edit in progress, or the file changed under us
    UNAVAILABLE = "unavailable"  # the engine cannot do it now (e.g. no config file to edit)
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class ErrorBody(Payload):
    code: ErrorCode
    message: str
    where: str = ""  # the key, host or parameter at fault

    HTTP_STATUS: ClassVar[dict[ErrorCode, int]] = {
        ErrorCode.BAD_REQUEST: 400,
        ErrorCode.INVALID_CONFIG: 422,
        ErrorCode.NOT_FOUND: 404,
        ErrorCode.CONFLICT: 409,
        ErrorCode.UNAVAILABLE: 503,
        ErrorCode.INTERNAL: 500,
    }

    @property
    def http_status(self) -> int:
        return self.HTTP_STATUS[self.code]

    def envelope(self) -> dict[str, Any]:
        return {"error": self.to_json()}

    @classmethod
    def from_envelope(cls, data: object) -> ErrorBody:
        if isinstance(data, Mapping) and "error" in data:
            return cls.from_json(data["error"])
        raise ProtocolError("not an error envelope")
