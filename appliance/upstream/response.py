"""The upstream client's answer record, ``UpstreamResponse``, and how its body is read or held."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from appliance.errors import UpstreamError
from appliance.upstream.failures import describe_failure

# A 401 is kept in memory while the engine tries its own credentials; error bodies are tiny.
CHALLENGE_BODY_LIMIT = 64 * 1024


# TLS receive buffer for an upstream connection that streams a body.  The engine keeps asyncio's
# default small (runner.TLS_READ_BUFFER) because it holds one per client connection; the few
# upstream connections that carry layers read in large steps instead: with 32 KiB reads a cold
# 256 MiB pull spent ~25 % more CPU in the appliance (1.36 vs 1.08 s) and ran 1.45x a direct pull
# instead of 1.22x.
UPSTREAM_TLS_READ_BUFFER = 256 * 1024


def _widen_tls_reads(response: aiohttp.ClientResponse) -> None:
    # asyncio has no public knob per connection; SSLProtocol.get_buffer() sizes its buffer from
    # the instance's max_size on the next read.  Anything unexpected leaves the default in place.
    transport = response.connection.transport if response.connection is not None else None
    protocol = getattr(transport, "_ssl_protocol", None)
    if isinstance(getattr(protocol, "max_size", None), int):
        protocol.max_size = max(protocol.max_size, UPSTREAM_TLS_READ_BUFFER)  # type: ignore[union-attr]


@dataclass(eq=False)
class UpstreamResponse:
    """The final upstream answer to one request.  Read it with ``chunks``/``read``, then ``release``."""

    status: int
    headers: CIMultiDictProxy[str]
    url: str  # final URL after redirects: for logs, never for clients (it may be a signed CDN URL)
    registry_host: str = ""
    _response: aiohttp.ClientResponse | None = field(default=None, repr=False)
    _body: bytes | None = field(default=None, repr=False)

    async def chunks(self, size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The body as it arrives, in chunks of at most ``size`` bytes.  Releases when done."""
        if self._response is None:
            if self._body:
                yield self._body
            return
        response = self._response
        _widen_tls_reads(response)
        try:
            async for chunk in response.content.iter_chunked(size):
                yield chunk
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamError(
                self.registry_host, describe_failure(exc, response.url.host or "?"), status=self.status
            ) from exc
        finally:
            response.release()

    async def read(self, limit: int) -> bytes:
        """The whole body, refusing (UpstreamError) one longer than ``limit`` bytes."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            await self.release()
            raise UpstreamError(
                self.registry_host,
                f"response body of {length} bytes exceeds the {limit}-byte limit",
                status=self.status,
            )
        buffer = bytearray()
        async for chunk in self.chunks():
            buffer += chunk
            if len(buffer) > limit:
                await self.release()
                raise UpstreamError(
                    self.registry_host, f"response body exceeds the {limit}-byte limit", status=self.status
                )
        return bytes(buffer)

    async def release(self) -> None:
        """Give the connection back (or close it, when the body was not read to the end)."""
        if self._response is not None:
            self._response.release()


def streamed(registry_host: str, response: aiohttp.ClientResponse) -> UpstreamResponse:
    """The final response with its body still on the wire, for the caller to stream."""
    return UpstreamResponse(
        status=response.status,
        headers=response.headers,
        url=str(response.url),
        registry_host=registry_host,
        _response=response,
    )


async def buffered(
    registry_host: str, response: aiohttp.ClientResponse, scrub: Callable[[str], str]
) -> UpstreamResponse:
    """A small response held in memory, so its connection can go back before a retry."""
    try:
        body = await response.content.read(CHALLENGE_BODY_LIMIT + 1)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        reason = scrub(describe_failure(exc, response.url.host or "?"))
        raise UpstreamError(registry_host, reason, status=response.status) from exc
    finally:
        response.release()
    if len(body) > CHALLENGE_BODY_LIMIT:
        raise UpstreamError(registry_host, "oversized 401 response body", status=response.status)
    return UpstreamResponse(
        status=response.status,
        headers=CIMultiDictProxy(CIMultiDict(response.headers)),
        url=str(response.url),
        registry_host=registry_host,
        _body=body,
    )
