"""The registry API's way upstream: requests skipped while a registry is down, and pass-through relays.

Every upstream call the registry API makes (``/v2/`` pings, blob fills, manifest fetches and
revalidations, relays) goes through one ``GatedUpstream``, so failing to reach the registry itself
marks it unreachable for all of them (see ``health``).  A bad answer from a registry that was
reached - a redirect loop, a refused or unusable redirect, a CDN hop that fails - fails that one
request only: one repository's broken blob must not put every repository behind a 502.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from appliance.config.model import RegistryConfig
from appliance.errors import UpstreamError, UpstreamUnreachable
from appliance.oci import Endpoint
from appliance.registry.health import UpstreamHealth
from appliance.registry.outcome import Call, Reply, relayed
from appliance.registry.request_input import forward_headers
from appliance.registry.responses import CHUNK, FORWARD_HEADERS, relay_response
from appliance.upstream.client import UpstreamClient
from appliance.upstream.response import UpstreamResponse


class GatedUpstream:
    """``UpstreamClient`` requests gated by ``UpstreamHealth``, and client requests relayed as they are."""

    __slots__ = ("health", "upstream")

    def __init__(self, upstream: UpstreamClient, health: UpstreamHealth) -> None:
        self.upstream = upstream
        self.health = health

    async def request(
        self, registry: RegistryConfig, method: str, path_qs: str, **kwargs: Any
    ) -> UpstreamResponse:
        """One upstream request, skipped at once while the registry is known to be unreachable."""
        reason = self.health.unreachable(registry.host)
        if reason is not None:
            raise UpstreamError(registry.host, reason)
        try:
            answer = await self.upstream.request(registry, method, path_qs, **kwargs)
        except UpstreamUnreachable as exc:  # the registry's own origin: refused, timed out, TLS failure
            self.health.failed(registry.host, exc.message)
            raise
        self.health.succeeded(registry.host)
        return answer

    async def relay(
        self,
        request: web.BaseRequest,
        registry: RegistryConfig,
        call: Call,
        *,
        actions: tuple[str, ...] = ("pull",),
        inject: bool = True,
    ) -> Reply:
        """Pass ``request`` to the upstream and its answer back, the cache untouched (BYPASS).

        ``inject=False``: only the client's own Authorization (``call.authorization``) goes along.
        """
        route = call.route
        headers = forward_headers(request.headers, FORWARD_HEADERS)
        has_body = request.method in ("POST", "PUT", "PATCH") and (
            request.content_length not in (None, 0) or request.headers.get("Transfer-Encoding") == "chunked"
        )
        answer = await self.request(
            registry,
            request.method,
            call.path_qs if route.endpoint is not Endpoint.PING else "/v2/",
            headers=headers,
            body=_body(request) if has_body else None,
            repository=route.repository or None,
            actions=actions,
            client_authorization=call.authorization,
            follow_redirects=request.method in ("GET", "HEAD"),
            our_credentials=inject,
        )
        return relayed(await relay_response(request, answer))


async def _body(request: web.BaseRequest) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk
