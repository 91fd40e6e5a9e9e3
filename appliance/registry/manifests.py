"""Manifest requests as the appliance serves them: digests from the cache, tags revalidated by TTL.

A digest is served from the cache or fetched and verified.  A tag follows ``tag_policy``: served
from the cache while fresh (its TTL from the registry's or the global manifest cache policy), then
checked upstream with a HEAD; when the upstream cannot answer (unreachable, 429, 5xx) the cached
copy is served STALE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from aiohttp import web

from appliance import oci
from appliance.cache import ManifestCache, StoredManifest
from appliance.config.model import Config, RegistryConfig
from appliance.digests import Algorithm, digest_of, parse_digest
from appliance.errors import ErrorCode, IntegrityError, RegistryError, UpstreamError
from appliance.events import CacheStatus
from appliance.oci import Route
from appliance.registry import request_input, tag_policy
from appliance.registry.gate import GatedUpstream
from appliance.registry.links import confirm_upstream
from appliance.registry.outcome import Call, Reply, Served, relayed
from appliance.registry.pullahead import PullAhead
from appliance.registry.responses import answer_error, manifest_response, relay_head
from appliance.registry.tag_policy import Answer, Asked, Decision
from appliance.upstream.response import UpstreamResponse

log = logging.getLogger("appliance.registry")

_T = TypeVar("_T")


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

    async def serve(self, request: web.BaseRequest, registry: RegistryConfig, call: Call) -> Reply:
        route = call.route
        accepted = request_input.accept(request.headers)
        head = request.method == "HEAD"
        if route.is_digest:
            stored = await self.manifests.get_by_digest(registry.host, route.reference)
            if stored is not None:
                upstream_status = None
                if not await self._vouched(call, stored.digest):
                    # Cached from another repository: served here only if the upstream has it here.
                    await confirm_upstream(
                        self._gate,
                        self.manifests.index,
                        registry,
                        route.repository,
                        "manifests",
                        stored.digest,
                        call.authorization,
                        call.credential,
                    )
                    upstream_status = 200
                return self._reply(
                    call, stored, head, Served(CacheStatus.HIT, upstream_status=upstream_status)
                )
            if head:
                return await self._gate.relay(request, registry, call)
            return await self._fetch(registry, call, accepted, None)

        klass = oci.accept_class(accepted)
        record = await self.manifests.get_tag(registry.host, route.repository, route.reference, klass)
        stored = None
        if record is not None:
            stored = await self.manifests.get_by_digest(registry.host, record.digest)
        if record is None or stored is None:
            if tag_policy.decide(cached=False, head=head) is Decision.RELAY:
                return await self._gate.relay(request, registry, call)
            return await self._fetch(registry, call, accepted, klass)
        ttl = tag_policy.ttl_for(registry, self.config().manifest_cache, route.reference)
        step = tag_policy.decide(cached=True, head=head, age=time.time() - record.fetched_at, ttl=ttl)
        if step is Decision.SERVE_CACHED and await self._vouched(call, stored.digest):
            return self._reply(call, stored, head, Served(CacheStatus.HIT))
        # Not within its TTL, or a tag another client's own credential fetched (linked for that
        # credential only): the upstream is asked, with this client's credentials.
        check: UpstreamResponse | None = None  # the revalidation's answer, None when there was none

        async def ask() -> tuple[str, str]:
            nonlocal check
            check = await self._gate.request(
                registry,
                "HEAD",
                f"/v2/{route.repository}/manifests/{route.reference}",
                headers=_accept_headers(accepted),
                repository=route.repository,
                client_authorization=call.authorization,
            )
            await check.release()
            digest = check.headers.get("Docker-Content-Digest", "")
            if check.status != 200 or not digest.startswith("sha256:"):
                raise _NotShared  # this request's own answer: tag_policy decides below
            return digest, check.headers.get("Content-Type", "")

        tier = self.manifests.tier
        try:
            if tier is None or call.credential:
                # A passed-through credential's answer is that client's alone: never shared.
                await _quietly(ask)
            else:
                shared = await _quietly(
                    lambda: tier.refresh_tag(
                        registry.host, route.repository, route.reference, klass, ask, fresh_for=ttl
                    )
                )
                if check is None and shared is not None:
                    # Another replica asked the upstream for the fleet: its record names the digest.
                    return await self._from_fleet(request, registry, call, accepted, klass, stored, shared)
                if check is None:  # a tier that answered nothing without asking: ask here, never guess
                    await _quietly(ask)
        except UpstreamError as exc:
            heard, why = Answer.UNREACHABLE, exc.message
        else:
            assert check is not None  # set by ``ask`` on every path without an UpstreamError
            current = check.headers.get("Docker-Content-Digest") == record.digest
            heard = tag_policy.answer_of(check.status, current=current)
            why = f"upstream answered {check.status}"
        step = tag_policy.decide(cached=True, head=head, asked=Asked.REVALIDATION, answer=heard)
        if step is Decision.SERVE_STALE or check is None:
            if not await self._vouched(call, stored.digest):
                # Passed-through content nobody vouched for to this client: nothing stale for it.
                raise RegistryError(503, ErrorCode.UNAVAILABLE, f"upstream {registry.host}: {why}")
            return self._stale(call, stored, head, why, None if check is None else check.status)
        if step is Decision.SERVE_REVALIDATED:
            await self.manifests.touch_tag(registry.host, route.repository, route.reference, klass)
            return self._reply(
                call, stored, head, Served(CacheStatus.REVALIDATED, upstream_status=check.status)
            )
        if step is Decision.RELAY:
            # A moved (or refused) tag on HEAD: relay the upstream's own answer, never spend a GET.
            return relayed(relay_head(check))
        # GET: the tag moved, or the upstream refused; its GET answer is stored or relayed as is.
        return await self._fetch(registry, call, accepted, klass, check.status)

    async def _from_fleet(
        self,
        request: web.BaseRequest,
        registry: RegistryConfig,
        call: Call,
        accepted: tuple[str, ...],
        klass: str,
        stored: StoredManifest,
        digest: str,
    ) -> Reply:
        """Serve a tag by the digest another replica heard from the upstream for it (and this class)."""
        route = call.route
        head = request.method == "HEAD"
        if digest == stored.digest:
            await self.manifests.touch_tag(registry.host, route.repository, route.reference, klass)
            return self._reply(call, stored, head, Served(CacheStatus.REVALIDATED))
        # The tag moved: its new manifest by digest, from this disk, the bucket, or the upstream.
        moved = await self.manifests.get_by_digest(registry.host, digest)
        if moved is None or not oci.accepts(accepted, moved.media_type):
            if head:
                return await self._gate.relay(request, registry, call)
            return await self._fetch(registry, call, accepted, klass, reference=digest)
        await self.manifests.put(
            registry.host, route.repository, digest, moved.media_type, moved.body, route.reference, klass
        )
        return self._reply(call, moved, head, Served(CacheStatus.HIT))

    async def _fetch(
        self,
        registry: RegistryConfig,
        call: Call,
        accepted: tuple[str, ...],
        klass: str | None,
        checked: int | None = None,
        *,
        reference: str | None = None,
    ) -> Reply:
        """GET the manifest upstream, verify and store it (``checked``: the revalidation's status).

        ``reference``: a digest to GET in place of the request's tag (the one the fleet's tag
        record names); it is stored as the tag's manifest all the same.
        """
        route = call.route
        reference = reference or route.reference
        by_digest = reference != route.reference or route.is_digest
        try:
            answer = await self._gate.request(
                registry,
                "GET",
                f"/v2/{route.repository}/manifests/{reference}",
                headers=_accept_headers(accepted),
                repository=route.repository,
                client_authorization=call.authorization,
            )
        except UpstreamError as exc:
            fallback = await self._any_stale(registry, route, accepted)
            step = tag_policy.decide(
                cached=fallback is not None, head=False, asked=Asked.FETCH, answer=Answer.UNREACHABLE
            )
            if (
                step is not Decision.SERVE_STALE
                or fallback is None
                or not await self._vouched(call, fallback.digest)
            ):
                raise
            return self._stale(call, fallback, False, exc.message, checked)
        heard = tag_policy.answer_of(answer.status)
        if heard is not Answer.OK:
            fallback = None
            if heard is Answer.UNAVAILABLE:
                fallback = await self._any_stale(registry, route, accepted)
            step = tag_policy.decide(cached=fallback is not None, head=False, asked=Asked.FETCH, answer=heard)
            if (
                step is Decision.SERVE_STALE
                and fallback is not None
                and await self._vouched(call, fallback.digest)
            ):
                await answer.release()
                return self._stale(call, fallback, False, f"upstream answered {answer.status}", answer.status)
            raise await answer_error(answer)
        try:
            body = await answer.read(oci.MAX_MANIFEST_BYTES)
        finally:
            await answer.release()
        media_type = oci.manifest_media_type(body, answer.headers.get("Content-Type"))
        algorithm = parse_digest(reference).algorithm if by_digest else Algorithm.SHA256
        digest = str(digest_of(body, algorithm))
        if by_digest and digest != reference:
            raise IntegrityError(
                registry.host,
                f"manifest {reference} arrived with digest {digest}",
                status=answer.status,
            )
        announced = answer.headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:") and not by_digest and announced != digest:
            raise IntegrityError(
                registry.host,
                f"manifest digest header {announced} does not match body {digest}",
                status=answer.status,
            )
        tag = None if route.is_digest else route.reference
        await self.manifests.put(registry.host, route.repository, digest, media_type, body, tag, klass)
        fetched = StoredManifest(digest=digest, media_type=media_type, body=body)
        return self._reply(call, fetched, False, Served(CacheStatus.MISS, upstream_status=answer.status))

    def _reply(self, call: Call, manifest: StoredManifest, head: bool, outcome: Served) -> Reply:
        """``manifest`` as the answer, and ``outcome`` with what went out (200, its bytes unless HEAD)."""
        # Every manifest served comes from this repository upstream (fetched, its tag record, or
        # linked/confirmed by digest): the repository may have what it lists (cache/links.py).
        body, media_type, digest = manifest.body, manifest.media_type, manifest.digest
        self.manifests.link(call.registry, call.route.repository, digest, body, media_type, call.credential)
        if not head and self.pull_ahead is not None:
            self.pull_ahead.note_manifest(call.registry, call.route.repository, digest, body, media_type)
        response = manifest_response(body, media_type, digest, head)
        return Reply(response, replace(outcome, http_status=200, bytes=0 if head else len(body)))

    async def _vouched(self, call: Call, digest: str) -> bool:
        """Whether the upstream vouched for ``digest`` in the call's repository to this client: to
        everyone (the engine's credentials) or to the credential it passes through."""
        return await self.manifests.is_linked(call.registry, call.route.repository, digest, call.credential)

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
        self, call: Call, stored: StoredManifest, head: bool, why: str, upstream_status: int | None
    ) -> Reply:
        message = f"serving the cached manifest: {why}"
        log.warning("%s %s:%s %s", call.registry, call.route.repository, call.route.reference, message)
        return self._reply(
            call, stored, head, Served(CacheStatus.STALE, upstream_status=upstream_status, message=message)
        )


class _NotShared(Exception):
    """The upstream's answer to a tag check is not a digest to share with other replicas."""


async def _quietly(ask: Callable[[], Awaitable[_T]]) -> _T | None:
    """``ask()``, or None when it raised ``_NotShared`` (its answer is in the caller's hands)."""
    try:
        return await ask()
    except _NotShared:
        return None


def _accept_headers(accepted: tuple[str, ...]) -> dict[str, str]:
    return {"Accept": ", ".join(accepted) if accepted else oci.FULL_ACCEPT}
