"""The registry API as the appliance serves it: cache first, upstream when needed.

One ``RegistryProxy.handle`` call serves one client request for one upstream registry, whichever
way it arrived (a MITM tunnel or mirror mode), and publishes exactly one event for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from appliance import oci
from appliance.cache import BlobCache, BlobReader, BlobSource, FetchBlob, ManifestCache, StoredManifest
from appliance.config import Config, RegistryConfig
from appliance.digests import Algorithm, digest_of, parse_digest
from appliance.errors import ErrorCode, IntegrityError, RegistryError, UpstreamError
from appliance.events import CacheStatus, EventBus, EventDraft, RequestKind
from appliance.health import UpstreamHealth
from appliance.oci import Endpoint, Route
from appliance.pullahead import PullAhead
from appliance.responses import (
    CHUNK,
    FORWARD_HEADERS,
    PreparedFileResponse,
    UpstreamAnswer,
    answer_error,
    error_response,
    manifest_response,
    relay_head,
    relay_response,
)
from appliance.streaming import parse_range, read_ahead, stream_chunk_size
from appliance.upstream import UpstreamClient, UpstreamResponse

log = logging.getLogger("appliance.registry")


@dataclass
class RegistryProxy:
    """Serves registry API requests for configured registries through the cache."""

    config: Callable[[], Config]
    upstream: UpstreamClient
    blobs: BlobCache
    manifests: ManifestCache
    events: EventBus
    health: UpstreamHealth = field(default_factory=UpstreamHealth)
    pull_ahead: PullAhead | None = None
    _streams: int = field(default=0, init=False)  # blob bodies being streamed right now
    active: int = field(default=0, init=False)  # requests being served, until their event is out

    async def handle(
        self,
        request: web.BaseRequest,
        registry: RegistryConfig,
        path_qs: str,
        client: str,
        *,
        kind: RequestKind | None = None,
        authorization: str | None = None,
    ) -> web.StreamResponse:
        """Serve ``request`` for ``registry``; ``path_qs`` is the upstream path and query.

        ``authorization`` replaces a missing client ``Authorization`` (seed-style credential
        injection on a token realm); a client's own header always wins.
        """
        path = path_qs.split("?", 1)[0]
        route = oci.parse_route(path)
        draft = EventDraft(
            client=client,
            registry=registry.host,
            method=request.method,
            route=route,
            path_qs=path_qs,
            authorization=request.headers.get("Authorization") or authorization,
            kind_override=kind,
        )
        self.active += 1
        try:
            return await self._handle(request, registry, route, path, draft)
        finally:
            self.active -= 1

    async def _handle(
        self, request: web.BaseRequest, registry: RegistryConfig, route: Route, path: str, draft: EventDraft
    ) -> web.StreamResponse:
        try:
            response = await self._route(request, registry, route, path, draft)
        except RegistryError as exc:
            draft.status = CacheStatus.ERROR if not isinstance(exc, UpstreamAnswer) else draft.status
            draft.http_status = exc.status
            if not draft.message:
                draft.message = exc.message
            response = error_response(exc)
        except UpstreamError as exc:
            draft.status = CacheStatus.ERROR
            draft.message = exc.message
            status = 429 if exc.status == 429 else 502
            code = ErrorCode.TOOMANYREQUESTS if status == 429 else ErrorCode.UNAVAILABLE
            draft.http_status = status
            response = error_response(RegistryError(status, code, f"upstream {registry.host}: {exc.message}"))
        if draft.status is CacheStatus.ERROR:
            log.warning(
                "%s %s %s %s: %s", registry.host, route.repository or "-", request.method, path, draft.message
            )
        self.events.publish(draft.event())
        return response

    async def _route(
        self, request: web.BaseRequest, registry: RegistryConfig, route: Route, path: str, draft: EventDraft
    ) -> web.StreamResponse:
        method = request.method
        endpoint = route.endpoint
        if endpoint is Endpoint.V1:
            raise oci.v1_refused(registry.host)
        if method not in ("GET", "HEAD"):
            if not self.config().effective_allow_push(registry):
                raise oci.push_disabled(method, registry.host)
            return await self._relay(request, registry, route, draft, actions=("pull", "push"))
        if endpoint is Endpoint.PING:
            return await self._ping(request, registry, draft)
        if endpoint is Endpoint.BLOB:
            return await self._blob(request, registry, route, draft)
        if endpoint is Endpoint.MANIFEST:
            return await self._manifest(request, registry, route, draft)
        return await self._relay(request, registry, route, draft)

    async def _upstream(
        self, registry: RegistryConfig, method: str, path_qs: str, **kwargs: Any
    ) -> UpstreamResponse:
        """One upstream request, skipped at once while the registry is known to be unreachable."""
        reason = self.health.unreachable(registry.host)
        if reason is not None:
            raise UpstreamError(registry.host, reason)
        try:
            answer = await self.upstream.request(registry, method, path_qs, **kwargs)
        except UpstreamError as exc:
            if exc.status is None:  # connection-level: refused, timed out, TLS failure
                self.health.failed(registry.host, exc.message)
            raise
        self.health.succeeded(registry.host)
        return answer

    # -- /v2/ ----------------------------------------------------------------------------------

    async def _ping(
        self, request: web.BaseRequest, registry: RegistryConfig, draft: EventDraft
    ) -> web.StreamResponse:
        try:
            answer = await self._upstream(registry, "GET", "/v2/", client_authorization=draft.authorization)
        except UpstreamError as exc:
            return self._local_ping(draft, f"upstream unreachable, answering /v2/ locally: {exc.message}")
        draft.upstream_status = answer.status
        if answer.status == 429 or answer.status >= 500:
            await answer.release()
            return self._local_ping(draft, f"upstream answered {answer.status}, answering /v2/ locally")
        draft.http_status = answer.status
        return await relay_response(request, answer, draft)

    @staticmethod
    def _local_ping(draft: EventDraft, why: str) -> web.StreamResponse:
        # Offline: cached images stay pullable, and clients ping /v2/ before anything else.
        draft.message = why
        draft.status = CacheStatus.STALE
        return web.Response(body=b"{}", content_type="application/json", headers=[oci.API_VERSION_HEADER])

    # -- blobs ---------------------------------------------------------------------------------

    async def _blob(
        self, request: web.BaseRequest, registry: RegistryConfig, route: Route, draft: EventDraft
    ) -> web.StreamResponse:
        digest = route.reference
        client_auth = draft.authorization
        if request.method == "HEAD":
            reader = await self.blobs.open(registry.host, digest)
            if reader is None:
                return await self._relay(request, registry, route, draft)
            try:
                draft.status = CacheStatus.HIT
                return web.Response(status=200, headers=_blob_headers(digest, reader.size))
            finally:
                await reader.close()

        if self.pull_ahead is not None:
            self.pull_ahead.on_blob(
                registry.host,
                route.repository,
                digest,
                lambda other: self._blob_fetch(registry, route.repository, other, client_auth, None),
            )
        fetch = self._blob_fetch(registry, route.repository, digest, client_auth, draft)
        reader = await self.blobs.open_or_fill(registry.host, route.repository, digest, fetch)
        draft.status = reader.status
        try:
            return await self._send_blob(request, reader, digest, draft)
        finally:
            await reader.close()

    def _blob_fetch(
        self,
        registry: RegistryConfig,
        repository: str,
        digest: str,
        client_auth: str | None,
        draft: EventDraft | None,
    ) -> FetchBlob:
        """How a fill gets the blob from upstream (``draft``: the request to note the status on)."""

        async def fetch() -> BlobSource:
            answer = await self._upstream(
                registry,
                "GET",
                f"/v2/{repository}/blobs/{digest}",
                repository=repository,
                client_authorization=client_auth,
            )
            if draft is not None:
                draft.upstream_status = answer.status
            if answer.status != 200:
                raise await answer_error(answer)
            length = answer.headers.get("Content-Length")
            return BlobSource(
                size=int(length) if length and length.isdigit() else None,
                chunks=answer.chunks(CHUNK),
                close=answer.release,
            )

        return fetch

    async def _send_blob(
        self, request: web.BaseRequest, reader: BlobReader, digest: str, draft: EventDraft
    ) -> web.StreamResponse:
        size = reader.size
        span = parse_range(request.headers.get("Range"), size)
        headers = _blob_headers(digest, size)
        transport = request.transport
        tls = transport is not None and transport.get_extra_info("sslcontext") is not None
        if reader.path is not None and size is not None and not tls:
            # A committed file: aiohttp's FileResponse does Range and uses sendfile where it can.
            headers.pop("Content-Length", None)
            file_response = PreparedFileResponse(reader.path, chunk_size=CHUNK, headers=headers)
            try:
                await file_response.prepare(request)
            except ConnectionError:
                draft.message = "client disconnected"
            draft.http_status = file_response.status
            draft.bytes = file_response.content_length or 0
            return file_response
        start, end = (0, size) if span is None else span
        response = web.StreamResponse(status=200 if span is None else 206, headers=headers)
        if span is not None and size is not None:
            response.headers["Content-Range"] = f"bytes {start}-{(end or size) - 1}/{size}"
        if end is not None:
            response.content_length = end - start
        draft.http_status = response.status
        await response.prepare(request)
        # Streamed (TLS, or following a fill): big reads, one kept in flight while the previous one
        # is written, keep the disk and the loop busy; the read size shrinks as more streams run, so
        # the bytes held for all of them together stay within one budget (a herd of 50 clients).
        self._streams += 1
        try:
            async for chunk in read_ahead(self._budgeted(reader, start, end)):
                await response.write(chunk)
                draft.bytes += len(chunk)
        except ConnectionError:
            draft.message = "client disconnected"
            return response
        except (IntegrityError, UpstreamError) as exc:
            # Headers are gone already: cut the connection so the client's own check fails.
            draft.status = CacheStatus.ERROR
            draft.message = f"blob {digest} failed mid-stream: {exc.message}"
            if request.transport is not None:
                request.transport.abort()
            return response
        finally:
            self._streams -= 1
        return response

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

    # -- manifests -----------------------------------------------------------------------------

    async def _manifest(
        self, request: web.BaseRequest, registry: RegistryConfig, route: Route, draft: EventDraft
    ) -> web.StreamResponse:
        accepted = oci.parse_accept(request.headers.getall("Accept", []))
        head = request.method == "HEAD"
        if route.is_digest:
            stored = await self.manifests.get_by_digest(registry.host, route.reference)
            if stored is not None:
                draft.status = CacheStatus.HIT
                return self._manifest_reply(stored.body, stored.media_type, stored.digest, head, draft)
            if head:
                return await self._relay(request, registry, route, draft)
            return await self._fetch_manifest(request, registry, route, draft, accepted, None)

        klass = oci.accept_class(accepted)
        record = await self.manifests.get_tag(registry.host, route.repository, route.reference, klass)
        stored = None
        if record is not None:
            stored = await self.manifests.get_by_digest(registry.host, record.digest)
        if record is not None and stored is not None:
            ttl = self._tag_ttl(registry, route.reference)
            if time.time() - record.fetched_at < ttl:
                draft.status = CacheStatus.HIT
                return self._manifest_reply(stored.body, stored.media_type, stored.digest, head, draft)
            try:
                check = await self._upstream(
                    registry,
                    "HEAD",
                    f"/v2/{route.repository}/manifests/{route.reference}",
                    headers=_accept_headers(accepted),
                    repository=route.repository,
                    client_authorization=draft.authorization,
                )
            except UpstreamError as exc:
                return self._stale(stored.body, stored.media_type, stored.digest, head, draft, exc.message)
            await check.release()
            draft.upstream_status = check.status
            if check.status == 429 or check.status >= 500:
                return self._stale(
                    stored.body,
                    stored.media_type,
                    stored.digest,
                    head,
                    draft,
                    f"upstream answered {check.status}",
                )
            if check.status == 200 and check.headers.get("Docker-Content-Digest") == record.digest:
                await self.manifests.touch_tag(registry.host, route.repository, route.reference, klass)
                draft.status = CacheStatus.REVALIDATED
                return self._manifest_reply(stored.body, stored.media_type, stored.digest, head, draft)
            if head:
                # A moved (or refused) tag on HEAD: relay the upstream's own answer, never spend a GET.
                return relay_head(check, draft)
            # GET: the tag moved, or the upstream refused; its GET answer is stored or relayed as is.
        elif head:
            return await self._relay(request, registry, route, draft)
        return await self._fetch_manifest(request, registry, route, draft, accepted, klass)

    async def _fetch_manifest(
        self,
        request: web.BaseRequest,
        registry: RegistryConfig,
        route: Route,
        draft: EventDraft,
        accepted: tuple[str, ...],
        klass: str | None,
    ) -> web.StreamResponse:
        try:
            answer = await self._upstream(
                registry,
                "GET",
                f"/v2/{route.repository}/manifests/{route.reference}",
                headers=_accept_headers(accepted),
                repository=route.repository,
                client_authorization=draft.authorization,
            )
        except UpstreamError as exc:
            fallback = await self._any_stale(registry, route, accepted)
            if fallback is None:
                raise
            return self._stale(fallback.body, fallback.media_type, fallback.digest, False, draft, exc.message)
        draft.upstream_status = answer.status
        if answer.status != 200:
            if answer.status == 429 or answer.status >= 500:
                fallback = await self._any_stale(registry, route, accepted)
                if fallback is not None:
                    await answer.release()
                    return self._stale(
                        fallback.body,
                        fallback.media_type,
                        fallback.digest,
                        False,
                        draft,
                        f"upstream answered {answer.status}",
                    )
            raise await answer_error(answer)
        try:
            body = await answer.read(oci.MAX_MANIFEST_BYTES)
        finally:
            await answer.release()
        media_type = oci.manifest_media_type(body, answer.headers.get("Content-Type"))
        algorithm = parse_digest(route.reference).algorithm if route.is_digest else Algorithm.SHA256
        digest = str(digest_of(body, algorithm))
        if route.is_digest and digest != route.reference:
            raise IntegrityError(registry.host, f"manifest {route.reference} arrived with digest {digest}")
        announced = answer.headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:") and not route.is_digest and announced != digest:
            raise IntegrityError(
                registry.host, f"manifest digest header {announced} does not match body {digest}"
            )
        tag = None if route.is_digest else route.reference
        await self.manifests.put(registry.host, route.repository, digest, media_type, body, tag, klass)
        draft.status = CacheStatus.MISS
        return self._manifest_reply(body, media_type, digest, False, draft)

    def _manifest_reply(
        self, body: bytes, media_type: str, digest: str, head: bool, draft: EventDraft
    ) -> web.Response:
        if not head and self.pull_ahead is not None:
            self.pull_ahead.note_manifest(draft.registry, draft.route.repository, digest, body, media_type)
        return manifest_response(body, media_type, digest, head, draft)

    async def _any_stale(
        self, registry: RegistryConfig, route: Route, accepted: tuple[str, ...]
    ) -> StoredManifest | None:
        if route.is_digest:
            return None
        record = await self.manifests.get_tag(
            registry.host, route.repository, route.reference, oci.accept_class(accepted)
        )
        if record is None:
            return None
        return await self.manifests.get_by_digest(registry.host, record.digest)

    def _stale(
        self, body: bytes, media_type: str, digest: str, head: bool, draft: EventDraft, why: str
    ) -> web.StreamResponse:
        draft.status = CacheStatus.STALE
        draft.message = f"serving the cached manifest: {why}"
        log.warning(
            "%s %s:%s %s", draft.registry, draft.route.repository, draft.route.reference, draft.message
        )
        return self._manifest_reply(body, media_type, digest, head, draft)

    def _tag_ttl(self, registry: RegistryConfig, tag: str) -> float:
        if registry.tag_ttl is not None:
            return registry.tag_ttl
        if registry.manifest_cache is False:
            return 0.0
        policy = self.config().manifest_cache
        if registry.manifest_cache is True and not policy.enabled:
            return policy.default_ttl
        return policy.ttl_for(tag)

    # -- pass-through --------------------------------------------------------------------------

    async def _relay(
        self,
        request: web.BaseRequest,
        registry: RegistryConfig,
        route: Route,
        draft: EventDraft,
        *,
        actions: tuple[str, ...] = ("pull",),
    ) -> web.StreamResponse:
        headers = {
            name: value for name in FORWARD_HEADERS if (value := request.headers.get(name)) is not None
        }
        has_body = request.method in ("POST", "PUT", "PATCH") and (
            request.content_length not in (None, 0) or request.headers.get("Transfer-Encoding") == "chunked"
        )
        answer = await self._upstream(
            registry,
            request.method,
            draft.path_qs if route.endpoint is not Endpoint.PING else "/v2/",
            headers=headers,
            body=_body(request) if has_body else None,
            repository=route.repository or None,
            actions=actions,
            client_authorization=draft.authorization,
            follow_redirects=request.method in ("GET", "HEAD"),
        )
        draft.upstream_status = answer.status
        draft.http_status = answer.status
        draft.status = CacheStatus.BYPASS
        return await relay_response(request, answer, draft)


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


def _accept_headers(accepted: tuple[str, ...]) -> dict[str, str]:
    return {"Accept": ", ".join(accepted) if accepted else oci.FULL_ACCEPT}


async def _body(request: web.BaseRequest) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk
