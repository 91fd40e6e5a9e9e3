"""Blob requests as the appliance serves them: from the cache, filled from upstream on a miss.

A HEAD answers from the cache or is relayed; a GET opens the blob (or joins or starts its fill)
and streams it, with Range, by sendfile when it can, and within one memory budget when it cannot.

A cached blob is served in a repository only when that repository is linked to it
(``registry.links``): otherwise the upstream is asked in that repository first.  Where pushing is
allowed, a HEAD always goes upstream: a client pushing decides from it whether to upload a blob,
and the upstream repository it pushes to may lack a blob the cache holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

from aiohttp import web

from appliance.cache import BlobCache, BlobReader, BlobSource, FetchBlob
from appliance.config.model import Config, RegistryConfig
from appliance.errors import IntegrityError, UpstreamError
from appliance.events import CacheStatus
from appliance.registry.gate import GatedUpstream
from appliance.registry.links import confirm_upstream
from appliance.registry.outcome import Call, Reply, Served
from appliance.registry.pullahead import PullAhead
from appliance.registry.responses import CHUNK, PreparedFileResponse, answer_error
from appliance.registry.streaming import (
    fill_chunk_size,
    parse_range,
    read_ahead,
    stream_chunk_size,
    write_slices,
)


class BlobService:
    """Serves ``/v2/<name>/blobs/<digest>`` GET and HEAD through the blob cache."""

    __slots__ = ("_config", "_gate", "_streams", "blobs", "pull_ahead")

    def __init__(
        self,
        blobs: BlobCache,
        gate: GatedUpstream,
        pull_ahead: PullAhead | None,
        config: Callable[[], Config] | None = None,
    ) -> None:
        self.blobs = blobs
        self.pull_ahead = pull_ahead
        self._gate = gate
        self._config = config
        self._streams = 0  # blob bodies being streamed right now

    async def serve(self, request: web.BaseRequest, registry: RegistryConfig, call: Call) -> Reply:
        route = call.route
        digest = route.reference
        client_auth = call.authorization
        index = self.blobs.index
        credential = call.credential
        linked = await index.is_linked(registry.host, route.repository, digest, credential)
        if request.method == "HEAD":
            return await self._head(request, registry, call, linked)
        # The last upstream answer this request got (the confirming HEAD, then this request's own
        # fill), noted by the callbacks the cache runs for it.
        heard: list[int] = []
        confirm = None
        if not linked:

            async def confirm() -> None:
                await confirm_upstream(
                    self._gate, index, registry, route.repository, "blobs", digest, client_auth, credential
                )
                heard.append(200)

        fetch = self._fetch(registry, route.repository, digest, client_auth, credential, heard.append)
        pull_ahead = self.pull_ahead
        on_miss = None
        if pull_ahead is not None:
            # Only on a miss: on a warm pull every blob is a hit, and looking them all up ahead of
            # the client only adds work (measured: a warm 12-layer pull at 1.16x a direct one with
            # those lookups, 1.03x without).  Started with this blob's fill, not once upstream has
            # answered for it: against a registry 20 ms away, a round trip sooner.
            def on_miss() -> None:
                pull_ahead.on_blob(
                    registry.host,
                    route.repository,
                    digest,
                    lambda other: self._fetch(
                        registry, route.repository, other, client_auth, credential, None
                    ),
                )

        reader = await self.blobs.open_or_fill(
            registry.host, route.repository, digest, fetch, on_miss=on_miss, confirm=confirm
        )
        try:
            response, sent = await self._send(request, reader, digest, call.pace)
        finally:
            await reader.close()
        upstream_status = heard[-1] if heard else None
        return Reply(response, replace(sent, upstream_status=upstream_status))

    async def _head(
        self, request: web.BaseRequest, registry: RegistryConfig, call: Call, linked: bool
    ) -> Reply:
        route = call.route
        digest = route.reference
        pushing = self._config is not None and self._config().effective_allow_push(registry)
        if pushing or not linked:
            try:
                reply = await self._gate.relay(request, registry, call)
            except UpstreamError as exc:
                if not linked or exc.status is not None:
                    raise
                # Unreachable: a linked blob is still answered from the cache, as on a pull.
            else:
                if reply.outcome.upstream_status == 200:
                    self.blobs.index.add_links_soon(
                        registry.host, route.repository, [digest], call.credential
                    )
                return reply
        reader = await self.blobs.open(registry.host, digest)
        if reader is None:
            return await self._gate.relay(request, registry, call)
        try:
            response = web.Response(status=200, headers=_blob_headers(digest, reader.size))
            return Reply(response, Served(CacheStatus.HIT))
        finally:
            await reader.close()

    def _fetch(
        self,
        registry: RegistryConfig,
        repository: str,
        digest: str,
        client_auth: str | None,
        credential: str,
        heard: Callable[[int], None] | None,
    ) -> FetchBlob:
        """How a fill gets the blob from upstream (``heard``: told the upstream's status, if any)."""

        async def fetch() -> BlobSource:
            answer = await self._gate.request(
                registry,
                "GET",
                f"/v2/{repository}/blobs/{digest}",
                repository=repository,
                client_authorization=client_auth,
            )
            if heard is not None:
                heard(answer.status)
            if answer.status != 200:
                raise await answer_error(answer)
            # A GET in this repository that the upstream answered is what a HEAD would have confirmed.
            self.blobs.index.add_links_soon(registry.host, repository, [digest], credential)
            length = answer.headers.get("Content-Length")
            return BlobSource(
                size=int(length) if length and length.isdigit() else None,
                chunks=answer.chunks(fill_chunk_size(self.blobs.fills.running)),
                close=answer.release,
            )

        return fetch

    async def _send(
        self,
        request: web.BaseRequest,
        reader: BlobReader,
        digest: str,
        pace: Callable[[int], Awaitable[None]] | None = None,
    ) -> tuple[web.StreamResponse, Served]:
        """Send the blob ``reader`` reads; the response, and what went out (after the last byte).

        ``pace``: the identity's byte rate, awaited before each piece is written (so no sendfile,
        which writes the whole file at once): a client over its rate is slowed down, not cut off.
        """
        status = reader.status
        size = reader.size
        span = parse_range(request.headers.get("Range"), size)
        headers = _blob_headers(digest, size)
        transport = request.transport
        tls = transport is not None and transport.get_extra_info("sslcontext") is not None
        if reader.path is not None and size is not None and not tls and pace is None:
            # A committed file: aiohttp's FileResponse does Range and uses sendfile where it can.
            headers.pop("Content-Length", None)
            file_response = PreparedFileResponse(reader.path, chunk_size=CHUNK, headers=headers)
            message = ""
            try:
                await file_response.prepare(request)
            except ConnectionError:
                message = "client disconnected"
            sent = Served(status, file_response.status, file_response.content_length or 0, message=message)
            return file_response, sent
        start, end = (0, size) if span is None else span
        response = web.StreamResponse(status=200 if span is None else 206, headers=headers)
        if span is not None and size is not None:
            response.headers["Content-Range"] = f"bytes {start}-{(end or size) - 1}/{size}"
        if end is not None:
            response.content_length = end - start
        await response.prepare(request)
        # Streamed (TLS, or following a fill): big reads, one kept in flight while the previous one
        # is written, keep the disk and the loop busy; the read size shrinks as more streams run, so
        # the bytes held for all of them together stay within one budget (a herd of 50 clients).
        self._streams += 1
        written = 0
        try:
            async for chunk in read_ahead(self._budgeted(reader, start, end)):
                for piece in write_slices(chunk):
                    if pace is not None:
                        await pace(len(piece))
                    await response.write(piece)
                written += len(chunk)
        except ConnectionError:
            return response, Served(status, response.status, written, message="client disconnected")
        except (IntegrityError, UpstreamError) as exc:
            # Headers are gone already: cut the connection so the client's own check fails.
            if request.transport is not None:
                request.transport.abort()
            message = f"blob {digest} failed mid-stream: {exc.message}"
            return response, Served(CacheStatus.ERROR, response.status, written, message=message)
        finally:
            self._streams -= 1
        return response, Served(status, response.status, written)

    async def _budgeted(self, reader: BlobReader, start: int, end: int | None) -> AsyncIterator[bytes]:
        """``reader``'s bytes [start, end), each read sized for the streams running at that moment."""
        if reader.status is CacheStatus.BYPASS:  # one pass over the upstream body, as it comes
            async for chunk in reader.chunks(start, end):
                yield chunk
            return
        pos = start
        while end is None or pos < end:
            size = stream_chunk_size(self._streams)
            stop = pos + size if end is None else min(end, pos + size)
            got = 0
            async for chunk in reader.chunks(pos, stop, size=size):
                got += len(chunk)
                yield chunk
            if got < stop - pos:  # the blob ended before ``stop``
                return
            pos = stop


def _blob_headers(digest: str, size: int | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": digest,
        "Accept-Ranges": "bytes",
        "Etag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }
    if size is not None:
        headers["Content-Length"] = str(size)
    return headers
