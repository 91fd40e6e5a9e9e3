"""Responses a registry client gets: relayed upstream answers, errors in OCI JSON, manifests, files.

Everything here turns a value into an aiohttp response; the decisions are made in
``blobs`` and ``manifests``, and what came of a request is theirs to say (``outcome``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from appliance import oci
from appliance.errors import ErrorCode, RegistryError, UpstreamError
from appliance.upstream.response import UpstreamResponse

CHUNK = 256 * 1024
PASSTHROUGH_BODY_LIMIT = 64 * 1024
# Response headers worth relaying from an upstream to a client; everything else (cookies, CDN
# and hop-by-hop headers) stays behind.
RELAY_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Docker-Content-Digest",
    "Docker-Distribution-API-Version",
    "Docker-Upload-UUID",
    "WWW-Authenticate",
    "Location",
    "Link",
    "Range",
    "Retry-After",
    "OCI-Subject",
    "OCI-Filters-Applied",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "Docker-RateLimit-Source",
    "Warning",
)
# Request headers a client may send that the upstream needs to see on pass-through requests.
FORWARD_HEADERS = ("Accept", "Content-Type", "Content-Length", "Content-Range", "Range", "User-Agent")


class PreparedFileResponse(web.FileResponse):
    """A FileResponse that may be sent inside the handler (while the cache lease is held).

    aiohttp prepares a returned response again; FileResponse would then try to send a second time.
    """

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


class UpstreamAnswer(RegistryError):
    """An upstream answer other than success, relayed to the client as it came (401, 404, ...)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(status, ErrorCode.UNAVAILABLE, f"upstream answered {status}", headers=headers)
        self.raw_body = body

    def body(self) -> bytes:
        return self.raw_body


@dataclass(frozen=True, slots=True)
class Relayed:
    """An upstream answer sent on to the client: its status, and the body bytes that went out."""

    response: web.StreamResponse
    status: int
    bytes: int = 0
    disconnected: bool = False  # the client went away before the body was all sent


async def relay_response(request: web.BaseRequest, answer: UpstreamResponse) -> Relayed:
    """Stream an upstream answer to the client with the headers a registry client needs."""
    try:
        response = web.StreamResponse(status=answer.status)
        for name in RELAY_HEADERS:
            for value in answer.headers.getall(name, []):
                response.headers.add(name, value)
        length = answer.headers.get("Content-Length")
        if request.method == "HEAD" or answer.status in (204, 304):
            await response.prepare(request)
            return Relayed(response, answer.status)
        if length is not None and length.isascii() and length.isdigit():
            response.content_length = int(length)
        else:
            response.headers.pop("Content-Length", None)
        await response.prepare(request)
        sent = 0
        try:
            async for chunk in answer.chunks(CHUNK):
                await response.write(chunk)
                sent += len(chunk)
        except ConnectionError:
            return Relayed(response, answer.status, sent, disconnected=True)
        return Relayed(response, answer.status, sent)
    finally:
        await answer.release()


def relay_head(answer: UpstreamResponse) -> Relayed:
    """An upstream's answer to a HEAD (already released) as the client's answer."""
    response = web.Response(status=answer.status)
    for name in RELAY_HEADERS:
        for value in answer.headers.getall(name, []):
            response.headers.add(name, value)
    return Relayed(response, answer.status)


async def answer_error(answer: UpstreamResponse) -> UpstreamAnswer:
    try:
        body = b""
        with contextlib.suppress(UpstreamError):
            body = await answer.read(PASSTHROUGH_BODY_LIMIT)
    finally:
        await answer.release()
    headers = {name: answer.headers[name] for name in RELAY_HEADERS if name in answer.headers}
    headers.pop("Content-Length", None)
    return UpstreamAnswer(answer.status, headers, body)


def ping_response() -> web.Response:
    """The appliance's own answer to ``GET /v2/``: a v2 registry, no credentials needed."""
    return web.json_response({}, headers=[oci.API_VERSION_HEADER])


def error_response(exc: RegistryError) -> web.Response:
    headers = dict(exc.headers)
    headers.setdefault("Content-Type", "application/json")
    headers[oci.API_VERSION_HEADER[0]] = oci.API_VERSION_HEADER[1]
    return web.Response(status=exc.status, body=exc.body(), headers=headers)


def manifest_response(body: bytes, media_type: str, digest: str, head: bool) -> web.Response:
    headers = {
        "Content-Type": media_type,
        "Docker-Content-Digest": digest,
        "Etag": f'"{digest}"',
        oci.API_VERSION_HEADER[0]: oci.API_VERSION_HEADER[1],
    }
    if head:
        headers["Content-Length"] = str(len(body))
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=body, headers=headers)
