"""The control API's HTTP edges: JSON bodies in and out, and every failure as the error envelope."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from appliance import protocol as p
from appliance.errors import ApplianceError, ConfigError

# One logger for the whole control server, whichever module logs.
log = logging.getLogger("appliance.control")


class Refused(ApplianceError):
    """A request the control API answers with an error envelope."""

    def __init__(self, code: p.ErrorCode, message: str, where: str = "") -> None:
        super().__init__(message)
        self.body = p.ErrorBody(code, message, where)


async def read_body(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError as exc:
        raise Refused(p.ErrorCode.BAD_REQUEST, f"request body is not JSON: {exc}") from None


def json_response(payload: p.Payload, status: int = 200) -> web.Response:
    return web.Response(text=payload.dumps(), status=status, content_type="application/json")


def _error(body: p.ErrorBody) -> web.Response:
    return web.Response(
        text=json.dumps(body.envelope(), separators=(",", ":")),
        status=body.http_status,
        content_type="application/json",
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure leaves as the protocol's error envelope, never as a traceback or HTML."""
    try:
        return await handler(request)
    except Refused as exc:
        return _error(exc.body)
    except p.ProtocolError as exc:
        return _error(p.ErrorBody(p.ErrorCode.BAD_REQUEST, str(exc)))
    except ConfigError as exc:
        return _error(p.ErrorBody(p.ErrorCode.INVALID_CONFIG, exc.message, exc.where))
    except web.HTTPException as exc:
        code = p.ErrorCode.NOT_FOUND if exc.status == 404 else p.ErrorCode.BAD_REQUEST
        if exc.status >= 500:
            code = p.ErrorCode.INTERNAL
        return _error(p.ErrorBody(code, f"{request.method} {request.path}: {exc.reason}"))
    except OSError as exc:
        log.warning("control %s %s failed: %s", request.method, request.path, exc)
        return _error(p.ErrorBody(p.ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc.strerror or exc}"))
    except ApplianceError as exc:
        return _error(p.ErrorBody(p.ErrorCode.INTERNAL, str(exc)))
