"""The upstream client: one pooled HTTP session to the real registries, with auth done by the engine.

``UpstreamClient.request`` sends one registry request and hands back the final response, having
(1) skipped the wire entirely while the registry has us rate-limited (for pull requests), (2) used a
cached bearer token or Basic credentials when it knows the registry wants them, (3) answered a 401
challenge once by fetching a token (``challenges.py`` decides which credential, and whether the realm may
see it), and (4) followed redirects itself, sending ``Authorization`` only back to the registry's
own origin, so clients never see CDN URLs.  Requests with a streamed body cannot be replayed, so
they are authorized *before* the body goes out.

What is not done here: caching (``cache/``), error JSON for clients (the registry API handler), and
choosing which client headers are worth forwarding (the caller passes them; hop-by-hop and
credential headers are dropped here anyway).

``UpstreamClient`` is the one entry point and keeps the request path - the 401 dance - in one
place; its parts sit beside it: ``upstream.transport`` (session, TLS trust, outbound proxy, the one
send), ``upstream.tokens`` (challenges seen, token fetches and cache), ``upstream.redirects``,
``upstream.response`` (the answer record and its body) and ``upstream.failures`` (one-line reasons
without secrets).
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import AsyncIterable, Callable, Mapping

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from appliance.config.model import Config, RegistryConfig
from appliance.errors import UpstreamError
from appliance.upstream import challenges as auth
from appliance.upstream.ratelimit import RateLimitState, RateLimitTracker, is_rate_limited_request
from appliance.upstream.redirects import Redirects
from appliance.upstream.response import UpstreamResponse, buffered
from appliance.upstream.tokens import UpstreamAuth
from appliance.upstream.transport import UpstreamTransport, forwardable

# UpstreamResponse is what ``request`` returns: callers take both names from here.


class UpstreamClient:
    """All of the appliance's outbound registry traffic, over one pooled session."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock  # wall-clock: token expiry and Retry-After dates are wall-clock
        self._rate = RateLimitTracker()
        self._transport = UpstreamTransport(config, self._rate, clock)
        self._auth = UpstreamAuth(config, self._transport, clock)
        self._redirects = Redirects(self._transport, self._auth)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._transport.start()

    async def close(self) -> None:
        await self._transport.close()

    def reconfigure(self, config: Config) -> None:
        """Adopt a reloaded config; the connection pool stays, tokens go if credentials changed."""
        self._config = config
        self._auth.reconfigure(config)
        self._transport.reconfigure(config)

    def set_own(self, addresses: set[str], ports: set[int]) -> None:
        """The appliance's own addresses and ports: no redirect may lead back to them."""
        self._transport.set_own(addresses, ports)

    async def prepare(self, registry: RegistryConfig) -> None:
        """Build the TLS context ``registry`` needs now, instead of in its first request."""
        await self._transport.ssl_for(registry)

    def rate_limit(self, registry: RegistryConfig) -> RateLimitState | None:
        return self._rate.get(registry.host)

    def rate_limits(self) -> dict[str, RateLimitState]:
        """Registry host -> the rate-limit facts it last sent."""
        states = ((r.host, self.rate_limit(r)) for r in self._config.registries)
        return {host: state for host, state in states if state is not None}

    # -- the request path ------------------------------------------------------------------------

    async def request(
        self,
        registry: RegistryConfig,
        method: str,
        path_qs: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: AsyncIterable[bytes] | None = None,
        repository: str | None = None,
        actions: tuple[str, ...] = ("pull",),
        client_authorization: str | None = None,
        follow_redirects: bool = True,
        our_credentials: bool = True,
    ) -> UpstreamResponse:
        """Send one request to ``registry`` and return its final response (see the module doc).

        ``our_credentials=False``: only ``client_authorization`` (or nothing) goes along, and a
        challenge is the client's to answer (requests that are not the registry API).
        """
        method = method.upper()
        blocked = self._rate.blocked(registry.host, self._clock())
        if blocked is not None and is_rate_limited_request(method, path_qs):
            wait = math.ceil(blocked.retry_after(self._clock()))
            raise UpstreamError(registry.host, f"rate limited by the registry for {wait} more s", status=429)
        url = URL(f"{registry.scheme.value}://{registry.host}{path_qs}", encoded=True)
        forward = forwardable(headers, with_body=body is not None)
        ssl_param = await self._transport.ssl_for(registry)

        if not our_credentials or (client_authorization is not None and client_authorization.strip()):
            authorization: str | None = (
                client_authorization if client_authorization and client_authorization.strip() else None
            )
            response = await self._transport.send(
                registry, method, url, forward, authorization, body, ssl_param
            )
        else:
            sent = await self._send_with_our_credentials(
                registry, method, url, forward, body, repository, actions, ssl_param
            )
            if isinstance(sent, UpstreamResponse):
                return sent
            response, authorization = sent
        return await self._redirects.follow(
            registry,
            method,
            url,
            response,
            forward,
            authorization,
            ssl_param,
            follow_redirects=follow_redirects,
            body_sent=body is not None,
        )

    async def _send_with_our_credentials(
        self,
        registry: RegistryConfig,
        method: str,
        url: URL,
        forward: CIMultiDict[str],
        body: AsyncIterable[bytes] | None,
        repository: str | None,
        actions: tuple[str, ...],
        ssl_param: ssl.SSLContext | bool,
    ) -> tuple[aiohttp.ClientResponse, str | None] | UpstreamResponse:
        """Send with the engine's own credentials, answering a challenge once.

        Returns the response and the Authorization it went out with, or, when our credentials (or
        none) do not cover the request, the registry's refusal as it came, for the client's own login.
        """
        credential = auth.choose_credential(self._config.credentials, registry, repository)
        scope = auth.repository_scope(repository, actions) if repository else None
        authorization = self._auth.known_authorization(registry, credential, scope)
        if authorization is None and body is not None:
            authorization = await self._auth.authorize_before_body(registry, credential, scope, ssl_param)
        response = await self._transport.send(registry, method, url, forward, authorization, body, ssl_param)
        if response.status != 401:
            return response, authorization
        challenge = auth.challenge_from(response.headers.getall("WWW-Authenticate", ()))
        if challenge is not None and body is not None:
            # A streamed body cannot be sent twice: the client sees this 401 and retries, and a
            # refused token must not be offered again then.
            if authorization is not None and authorization.startswith("Bearer "):
                self._auth.forget_token(registry, challenge, credential, scope, authorization)
        elif challenge is not None:
            self._auth.remember_challenge(registry, challenge)
            refused = await buffered(registry.host, response, self._transport.scrub)
            if authorization is not None and authorization.startswith("Bearer "):
                self._auth.forget_token(registry, challenge, credential, scope, authorization)
            retry = await self._auth.authorize(registry, challenge, credential, scope, ssl_param)
            if retry is None or retry == authorization:
                return refused  # the challenge goes back unchanged: a client's own login works
            response = await self._transport.send(registry, method, url, forward, retry, None, ssl_param)
            if response.status in (401, 403):
                # Our credentials (or none) do not cover this: the client gets the challenge it
                # would have got asking directly, so its own login takes over.
                response.release()
                return refused
            authorization = retry
        return response, authorization
