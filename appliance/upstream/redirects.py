"""Upstream redirects, followed by the appliance itself so that clients never see CDN URLs.

Registries send blob downloads on to signed CDN URLs.  ``Redirects.follow`` walks up to
``MAX_REDIRECTS`` hops, sending ``Authorization`` only back to the registry's own origin; a hop that
lands on another registry asking for a bearer token (registry.k8s.io -> Artifact Registry) gets an
anonymous token from that registry's own realm.  Every hop first passes the redirect policy
(``redirect_policy``): no https -> http downgrade, and a host nobody configured is reached only over
the guarded pool, whose resolver refuses loopback, link-local, metadata and the appliance's own
addresses at connect time.  A refused hop is ``UpstreamRefused``, raised before any connection.
"""

from __future__ import annotations

import ssl

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from appliance.config.model import RegistryConfig
from appliance.errors import UpstreamError, UpstreamRefused
from appliance.upstream import challenges as auth
from appliance.upstream.challenges import ChallengeScheme
from appliance.upstream.redirect_policy import RedirectRefused
from appliance.upstream.response import UpstreamResponse, streamed
from appliance.upstream.tokens import UpstreamAuth
from appliance.upstream.transport import BODY_HEADERS, UpstreamTransport, origin, registry_url

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


class Redirects:
    """Follows an upstream response's redirects over the transport, asking ``auth`` for tokens."""

    def __init__(self, transport: UpstreamTransport, auth: UpstreamAuth) -> None:
        self._transport = transport
        self._auth = auth

    async def follow(
        self,
        registry: RegistryConfig,
        method: str,
        url: URL,
        response: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        authorization: str | None,
        ssl_param: ssl.SSLContext | bool,
        *,
        follow_redirects: bool,
        body_sent: bool,
    ) -> UpstreamResponse:
        """Follow redirects (up to MAX_REDIRECTS), credentials only ever back to the registry's origin."""
        home = origin(registry_url(registry))
        hops = 0
        while follow_redirects and response.status in REDIRECT_STATUSES and "Location" in response.headers:
            if body_sent and response.status in (307, 308):
                break  # the body is gone: a replay is impossible, the caller sees the redirect
            response.release()
            if hops == MAX_REDIRECTS:
                raise UpstreamError(
                    registry.host, f"more than {MAX_REDIRECTS} redirects, the last from {url.host}"
                )
            try:
                target = url.join(URL(response.headers["Location"], encoded=True))
            except ValueError as exc:
                raise UpstreamError(registry.host, f"unusable redirect Location from {url.host}") from exc
            if target.scheme not in ("http", "https") or not target.host:
                raise UpstreamError(registry.host, f"redirect from {url.host} to a non-HTTP URL")
            if response.status == 303 or (response.status in (301, 302) and method not in ("GET", "HEAD")):
                method, body_sent = "GET", False
                headers = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in BODY_HEADERS)
            try:
                guarded = self._transport.redirect_policy.check_hop(registry, url, target)
            except RedirectRefused as exc:
                raise UpstreamRefused(registry.host, exc.reason) from None
            hops += 1
            url = target
            hop_authorization = authorization if origin(url) == home else None
            response = await self._transport.send(
                registry, method, url, headers, hop_authorization, None, ssl_param, guarded=guarded
            )
            if response.status == 401 and origin(url) != home:
                response = await self._answer_foreign_challenge(
                    registry, method, url, response, headers, ssl_param, guarded
                )
        return streamed(registry.host, response)

    async def _answer_foreign_challenge(
        self,
        registry: RegistryConfig,
        method: str,
        url: URL,
        response: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        ssl_param: ssl.SSLContext | bool,
        guarded: bool,
    ) -> aiohttp.ClientResponse:
        """A redirect landed on another registry that wants a bearer token (registry.k8s.io sends
        every request on to an Artifact Registry host): fetch one anonymously from that host's own
        realm - never with our credentials - and ask once more. Anything else goes back as it came."""
        challenge = auth.challenge_from(response.headers.getall("WWW-Authenticate", ()))
        if challenge is None or challenge.scheme != ChallengeScheme.BEARER:
            return response
        host = url.host or ""
        foreign = RegistryConfig(host=host if url.port in (None, 443) else f"{host}:{url.port}")
        bearer = await self._auth.authorize(foreign, challenge, None, None, ssl_param)
        if bearer is None:
            return response
        response.release()
        return await self._transport.send(
            registry, method, url, headers, bearer, None, ssl_param, guarded=guarded
        )
