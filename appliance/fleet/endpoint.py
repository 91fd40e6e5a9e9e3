"""``/_fleet/v1/fills/<digest>``: where other replicas follow this replica's fill, and how they ask.

Served on the proxy port (the router hands every ``/_fleet/`` request here, before any client
identity or ACL is looked at) and refused without a valid HMAC of the fleet token: a client of the
proxy never reaches it, and a replica never needs a client's credentials to follow.

The request carries ``X-Fleet-Auth: v1 <replica_id> <unix time> <hex HMAC-SHA256>`` over
``v1 \\n replica_id \\n time \\n method \\n path?query``; it is accepted within ``MAX_SKEW`` seconds of
this replica's clock.  ``?offset=N`` resumes at byte N (a follower whose stream broke).  The answer
is the blob's bytes from that offset, ``X-Fleet-Size`` its whole size when known; 404 when this
replica neither fills nor holds the blob (the follower then looks in the bucket or takes the lease).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from appliance.cache.readers import BlobReader
from appliance.config.secret import Secret
from appliance.digests import Digest, parse_digest
from appliance.fleet.counters import FleetCounters

log = logging.getLogger(__name__)

PREFIX = "/_fleet/"
FILLS = "/_fleet/v1/fills/"
AUTH_HEADER = "X-Fleet-Auth"
SIZE_HEADER = "X-Fleet-Size"
MAX_SKEW = 300.0

# The local reader of a digest (a fill in flight or a committed entry), or None.
OpenLocal = Callable[[Digest], Awaitable[BlobReader | None]]


def _mac(token: Secret, replica_id: str, stamp: int, method: str, target: str) -> str:
    message = f"v1\n{replica_id}\n{stamp}\n{method}\n{target}".encode()
    return hmac.new(token.reveal().encode(), message, hashlib.sha256).hexdigest()


def sign(token: Secret, replica_id: str, method: str, target: str, now: float) -> str:
    """The ``X-Fleet-Auth`` value for ``method target`` (``target`` = path with its query)."""
    stamp = int(now)
    return f"v1 {replica_id} {stamp} {_mac(token, replica_id, stamp, method, target)}"


def verify(token: Secret, header: str | None, method: str, target: str, now: float) -> str | None:
    """The replica id a valid header was signed by, or None."""
    if not header or not token:
        return None
    parts = header.split(" ")
    if len(parts) != 4 or parts[0] != "v1" or not parts[2].isdigit():
        return None
    _, replica_id, stamp_text, mac = parts
    stamp = int(stamp_text)
    if abs(now - stamp) > MAX_SKEW:
        return None
    if not hmac.compare_digest(mac, _mac(token, replica_id, stamp, method, target)):
        return None
    return replica_id


class FillEndpoint:
    """The aiohttp handler for ``/_fleet/...`` (the engine's router calls ``handle``)."""

    def __init__(
        self,
        token: Secret,
        open_local: OpenLocal,
        counters: FleetCounters,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token = token
        self._open_local = open_local
        self._counters = counters
        self._clock = clock

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        target = request.rel_url.raw_path_qs
        peer = verify(self._token, request.headers.get(AUTH_HEADER), request.method, target, self._clock())
        if peer is None:
            # Nothing about why: a prober learns only that this is not for it.
            return web.Response(status=403, text="forbidden\n")
        path = request.rel_url.path
        if request.method != "GET" or not path.startswith(FILLS):
            return web.Response(status=404, text="not found\n")
        try:
            digest = parse_digest(path.removeprefix(FILLS))
            offset = int(request.rel_url.query.get("offset", "0"))
        except ValueError:
            return web.Response(status=400, text="bad digest or offset\n")
        if offset < 0:
            return web.Response(status=400, text="bad offset\n")
        reader = await self._open_local(digest)
        if reader is None:
            return web.Response(status=404, text="not filling\n")
        try:
            return await self._stream(request, reader, offset, peer)
        finally:
            await reader.close()

    async def _stream(
        self, request: web.BaseRequest, reader: BlobReader, offset: int, peer: str
    ) -> web.StreamResponse:
        size = reader.size
        if size is not None and offset > size:
            return web.Response(status=416, text="offset past the end\n")
        response = web.StreamResponse(status=200)
        response.content_type = "application/octet-stream"
        if size is not None:
            response.headers[SIZE_HEADER] = str(size)
            response.content_length = size - offset
        await response.prepare(request)
        sent = 0
        try:
            async for chunk in reader.chunks(offset):
                await response.write(chunk)
                sent += len(chunk)
        except ConnectionError:
            log.info("fleet: %s stopped following after %d bytes", peer, sent)
        except Exception as exc:  # the fill failed: cut the stream so the follower sees it short
            log.info("fleet: fill followed by %s failed after %d bytes: %s", peer, sent, exc)
            if request.transport is not None:
                request.transport.abort()
        finally:
            self._counters.served_bytes += sent
        return response
