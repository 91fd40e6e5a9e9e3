"""Manifest requests as the appliance serves them: digests from the cache, tags revalidated by TTL.

A digest is served from the cache or fetched and verified.  A tag is served from the cache while
fresh (its TTL from the registry's or the global manifest cache policy), then checked upstream with
a HEAD; when the upstream cannot answer (unreachable, 429, 5xx) the cached copy is served STALE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

from appliance import oci
from appliance.cache import ManifestCache, StoredManifest
from appliance.config.model import Config, RegistryConfig
from appliance.digests import Algorithm, digest_of, parse_digest
from appliance.errors import IntegrityError, UpstreamError
from appliance.events import CacheStatus, EventDraft
from appliance.oci import Route
from appliance.registry import request_input
from appliance.registry.gate import GatedUpstream
from appliance.registry.links import confirm_upstream
from appliance.registry.pullahead import PullAhead
from appliance.registry.responses import answer_error, manifest_response, relay_head

log = logging.getLogger("appliance.registry")


class ManifestService:
    """Serves ``/v2/<name>/manifests/<reference>`` GET and HEAD through the manifest cache."""

    __slots__ = ("_gate", "config", "manifests", "pull_ahead")

    def __init__(
        self,
        config: Callable[[], Config],
        manifests: ManifestCache,
        gate: GatedUpstream,
        pull_ahead: PullAhead | None,
    ) -> None:
        self.config = config
        self.manifests = manifests
        self.pull_ahead = pull_ahead
        self._gate = gate

    async def serve(
        self, request: web.BaseRequest, registry: RegistryConfig, route: Route, draft: EventDraft
    ) -> web.StreamResponse:
        accepted = request_input.accept(request.headers)
        head = request.method == "HEAD"
        if route.is_digest:
            stored = await self.manifests.get_by_digest(registry.host, route.reference)
            if stored is not None:
                if not await self.manifests.is_linked(registry.host, route.repository, stored.digest):
                    # Cached from another repository: served here only if the upstream has it here.
                    await confirm_upstream(
                        self._gate,
                        self.manifests.index,
                        registry,
                        route.repository,
                        "manifests",
                        stored.digest,
                        draft,
                    )
                draft.status = CacheStatus.HIT
                return self._reply(stored.body, stored.media_type, stored.digest, head, draft)
            if head:
                return await self._gate.relay(request, registry, route, draft)
            return await self._fetch(request, registry, route, draft, accepted, None)

        klass = oci.accept_class(accepted)
        record = await self.manifests.get_tag(registry.host, route.repository, route.reference, klass)
        stored = None
        if record is not None:
            stored = await self.manifests.get_by_digest(registry.host, record.digest)
        if record is not None and stored is not None:
            ttl = self._tag_ttl(registry, route.reference)
            if time.time() - record.fetched_at < ttl:
                draft.status = CacheStatus.HIT
                return self._reply(stored.body, stored.media_type, stored.digest, head, draft)
            try:
                check = await self._gate.request(
                    registry,
                    "HEAD",
                    f"/v2/{route.repository}/manifests/{route.reference}",
                    headers=_accept_headers(accepted),
                    repository=route.repository,
                    client_authorization=draft.authorization,
                )
            except UpstreamError as exc:
                return self._stale(stored, head, draft, exc.message)
            await check.release()
            draft.upstream_status = check.status
            if check.status == 429 or check.status >= 500:
                return self._stale(stored, head, draft, f"upstream answered {check.status}")
            if check.status == 200 and check.headers.get("Docker-Content-Digest") == record.digest:
                await self.manifests.touch_tag(registry.host, route.repository, route.reference, klass)
                draft.status = CacheStatus.REVALIDATED
                return self._reply(stored.body, stored.media_type, stored.digest, head, draft)
            if head:
                # A moved (or refused) tag on HEAD: relay the upstream's own answer, never spend a GET.
                return relay_head(check, draft)
            # GET: the tag moved, or the upstream refused; its GET answer is stored or relayed as is.
        elif head:
            return await self._gate.relay(request, registry, route, draft)
        return await self._fetch(request, registry, route, draft, accepted, klass)

    async def _fetch(
        self,
        request: web.BaseRequest,
        registry: RegistryConfig,
        route: Route,
        draft: EventDraft,
        accepted: tuple[str, ...],
        klass: str | None,
    ) -> web.StreamResponse:
        try:
            answer = await self._gate.request(
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
            return self._stale(fallback, False, draft, exc.message)
        draft.upstream_status = answer.status
        if answer.status != 200:
            if answer.status == 429 or answer.status >= 500:
                fallback = await self._any_stale(registry, route, accepted)
                if fallback is not None:
                    await answer.release()
                    return self._stale(fallback, False, draft, f"upstream answered {answer.status}")
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
        return self._reply(body, media_type, digest, False, draft)

    def _reply(
        self, body: bytes, media_type: str, digest: str, head: bool, draft: EventDraft
    ) -> web.Response:
        # Every manifest served comes from this repository upstream (fetched, its tag record, or
        # linked/confirmed by digest): the repository may have what it lists (cache/links.py).
        self.manifests.link(draft.registry, draft.route.repository, digest, body, media_type)
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

    def _stale(self, stored: StoredManifest, head: bool, draft: EventDraft, why: str) -> web.StreamResponse:
        draft.status = CacheStatus.STALE
        draft.message = f"serving the cached manifest: {why}"
        log.warning(
            "%s %s:%s %s", draft.registry, draft.route.repository, draft.route.reference, draft.message
        )
        return self._reply(stored.body, stored.media_type, stored.digest, head, draft)

    def _tag_ttl(self, registry: RegistryConfig, tag: str) -> float:
        if registry.tag_ttl is not None:
            return registry.tag_ttl
        if registry.manifest_cache is False:
            return 0.0
        policy = self.config().manifest_cache
        if registry.manifest_cache is True and not policy.enabled:
            return policy.default_ttl
        return policy.ttl_for(tag)


def _accept_headers(accepted: tuple[str, ...]) -> dict[str, str]:
    return {"Accept": ", ".join(accepted) if accepted else oci.FULL_ACCEPT}
