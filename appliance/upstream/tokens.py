"""The upstream token handshake: which Authorization to send, and bearer tokens fetched and shared.

``UpstreamAuth`` remembers the challenge each registry last sent, so later requests carry a cached
token (or Basic credentials) up front; it answers a challenge with a token from the realm, fetched
once for all the requests that want the same (registry, credential, scope) at the same moment.  The
pure rules - which credential, whether a realm may see it, token parsing and the cache - live in
``upstream/challenges.py``; this module does their I/O over the shared transport.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

import aiohttp
from yarl import URL

from appliance.config.model import Config, Credential, RegistryConfig
from appliance.upstream import challenges as auth
from appliance.upstream.challenges import Challenge, ChallengeScheme, Token, TokenCache, TokenError, TokenKey
from appliance.upstream.failures import describe_failure
from appliance.upstream.transport import USER_AGENT, UpstreamTransport, forwardable, registry_url

# The upstream client's logger, as it was before the client was split into modules.
log = logging.getLogger("appliance.upstream")

TOKEN_BODY_LIMIT = 1024 * 1024


class UpstreamAuth:
    """Challenges seen per registry, the token cache, and token fetches in flight."""

    def __init__(self, config: Config, transport: UpstreamTransport, clock: Callable[[], float]) -> None:
        self._config = config
        self._transport = transport
        self._clock = clock
        self._tokens = TokenCache()
        self._token_fills: dict[TokenKey, asyncio.Future[Token | None]] = {}
        self._challenges: dict[str, Challenge] = {}  # registry host -> the challenge it last sent
        # (registry host, token host, credential scope, user) already logged as borrowed.
        self._borrowed: set[tuple[str, str, str, str]] = set()

    def reconfigure(self, config: Config) -> None:
        """Adopt a reloaded config; tokens go if credentials changed."""
        previous, self._config = self._config, config
        if config.credentials != previous.credentials:
            self._tokens.clear()
            self._borrowed.clear()

    def remember_challenge(self, registry: RegistryConfig, challenge: Challenge) -> None:
        self._challenges[registry.host] = challenge

    def known_authorization(
        self, registry: RegistryConfig, credential: Credential | None, scope: str | None
    ) -> str | None:
        """An Authorization value to send up front, when an earlier challenge tells us which."""
        challenge = self._challenges.get(registry.host)
        if challenge is None:
            return None
        if challenge.scheme == ChallengeScheme.BASIC:
            return auth.basic_authorization(credential) if credential is not None else None
        key = self._token_key(registry, challenge, credential, scope)
        token = self._tokens.get(key, self._clock())
        return f"Bearer {token.value}" if token is not None else None

    async def authorize_before_body(
        self,
        registry: RegistryConfig,
        credential: Credential | None,
        scope: str | None,
        ssl_param: ssl.SSLContext | bool,
    ) -> str | None:
        """A streamed body goes out once: learn the challenge from ``GET /v2/`` and authorize first."""
        challenge = self._challenges.get(registry.host)
        if challenge is None:
            probe_url = registry_url(registry).with_path("/v2/")
            probe = await self._transport.send(
                registry, "GET", probe_url, forwardable(None, with_body=False), None, None, ssl_param
            )
            try:
                if probe.status != 401:
                    return None
                challenge = auth.challenge_from(probe.headers.getall("WWW-Authenticate", ()))
            finally:
                probe.release()
            if challenge is None:
                return None
            self._challenges[registry.host] = challenge
        return await self.authorize(registry, challenge, credential, scope, ssl_param)

    async def authorize(
        self,
        registry: RegistryConfig,
        challenge: Challenge,
        credential: Credential | None,
        scope: str | None,
        ssl_param: ssl.SSLContext | bool,
    ) -> str | None:
        """Answer a challenge: Basic with our credential, or a (cached or fresh) bearer token."""
        if challenge.scheme == ChallengeScheme.BASIC:
            return auth.basic_authorization(credential) if credential is not None else None
        realm = challenge.realm or ""
        key = self._token_key(registry, challenge, credential, scope)
        if credential is not None and key[1] is None:
            log.warning(
                "registry %s: token realm host %s is not one of its allowed auth hosts;"
                " requesting the token anonymously",
                registry.host,
                auth.realm_host(realm),
            )
        token = await self._token(registry, key, challenge, scope, ssl_param)
        return f"Bearer {token.value}" if token is not None else None

    def _token_key(
        self, registry: RegistryConfig, challenge: Challenge, credential: Credential | None, scope: str | None
    ) -> TokenKey:
        wanted = scope or challenge.param("scope") or ""
        sent = self._credential_for_realm(registry, challenge.realm or "", credential, wanted)
        return (registry.host, auth.credential_identity(sent), wanted)

    def _credential_for_realm(
        self, registry: RegistryConfig, realm: str, credential: Credential | None, scope: str
    ) -> Credential | None:
        """What goes to the token realm: the registry's own credential where the realm may see it,
        else one configured for the realm's own host (the seed's AUTH_REGISTRIES form), else none."""
        if credential is not None and auth.realm_allows_credentials(realm, registry):
            return credential
        if self._config.registry_for(registry.host) != registry:
            # A host a redirect landed on (or one a reload removed): the token bought with the
            # credential would go to it, and only configured registries may have such tokens.
            return None
        borrowed = auth.realm_credential(
            self._config.credentials, realm, registry, auth.scope_repository(scope)
        )
        if borrowed is not None:
            noted = (registry.host, borrowed.host, borrowed.scope, borrowed.username)
            if noted not in self._borrowed:
                self._borrowed.add(noted)
                log.info(
                    "registry %s borrows the credential for %s (user %s) for its token requests to %s",
                    registry.host,
                    borrowed.scope,
                    borrowed.username,
                    auth.realm_host(realm),
                )
        return borrowed

    def forget_token(
        self,
        registry: RegistryConfig,
        challenge: Challenge,
        credential: Credential | None,
        scope: str | None,
        authorization: str,
    ) -> None:
        key = self._token_key(registry, challenge, credential, scope)
        cached = self._tokens.get(key, self._clock())
        # Only the token that was refused: a concurrent request may have stored a fresh one already.
        if cached is not None and f"Bearer {cached.value}" == authorization:
            self._tokens.discard(key)

    async def _token(
        self,
        registry: RegistryConfig,
        key: TokenKey,
        challenge: Challenge,
        scope: str | None,
        ssl_param: ssl.SSLContext | bool,
    ) -> Token | None:
        """A token for ``key``: from the cache, from a fetch already under way, or fetched now."""
        cached = self._tokens.get(key, self._clock())
        if cached is not None:
            return cached
        pending = self._token_fills.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if pending.cancelled():  # the fetching request was cancelled, not us
                    return None
                raise
        future: asyncio.Future[Token | None] = asyncio.get_running_loop().create_future()
        self._token_fills[key] = future
        try:
            token = await self._fetch_token(registry, key, challenge, scope, ssl_param)
        except BaseException:
            future.cancel()
            raise
        finally:
            self._token_fills.pop(key, None)
        if token is not None:
            self._tokens.put(key, token)
        future.set_result(token)
        return token

    async def _fetch_token(
        self,
        registry: RegistryConfig,
        key: TokenKey,
        challenge: Challenge,
        scope: str | None,
        ssl_param: ssl.SSLContext | bool,
    ) -> Token | None:
        realm = challenge.realm or ""
        credential = self._credential_for_identity(key[1])
        query: list[tuple[str, str]] = []
        service = challenge.param("service")
        if service:
            query.append(("service", service))
        for wanted in dict.fromkeys(s for s in (scope, challenge.param("scope")) if s):
            query.append(("scope", wanted))
        headers = {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": USER_AGENT}
        if credential is not None:
            headers["Authorization"] = auth.basic_authorization(credential)
        transport = self._transport
        if transport.proxy_headers and realm.startswith("http:"):
            headers.update(transport.proxy_headers)
        who = f"as {credential.username}" if credential is not None else "anonymously"
        where = auth.realm_host(realm)
        try:
            realm_url = URL(realm).extend_query(query)
            if realm_url.scheme not in ("http", "https") or not realm_url.host:
                raise ValueError("not an HTTP URL")
        except ValueError:
            log.warning("registry %s: unusable token realm in challenge", registry.host)
            return None
        session = transport.session
        try:
            # Redirects are not followed: they could carry our Basic credentials elsewhere.
            async with session.get(
                realm_url,
                headers=headers,
                ssl=ssl_param,
                allow_redirects=False,
                proxy=transport.proxy,
                proxy_headers=transport.proxy_headers,
                timeout=transport.timeout,
            ) as response:
                if response.status != 200:
                    log.warning(
                        "registry %s: token request %s to %s refused: HTTP %d",
                        registry.host,
                        who,
                        where,
                        response.status,
                    )
                    return None
                body = await response.content.read(TOKEN_BODY_LIMIT + 1)
            if len(body) > TOKEN_BODY_LIMIT:
                raise TokenError("token response too large")
            token = auth.parse_token_response(body, self._clock())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning(
                "registry %s: token request %s failed: %s",
                registry.host,
                who,
                transport.scrub(describe_failure(exc, where)),
            )
            return None
        except TokenError as exc:
            log.warning("registry %s: token from %s unusable: %s", registry.host, where, exc)
            return None
        log.debug("registry %s: got a token %s from %s for %s", registry.host, who, where, key[2] or "-")
        return token

    def _credential_for_identity(self, identity: tuple[str, str] | None) -> Credential | None:
        if identity is None:
            return None
        for credential in self._config.credentials:
            if auth.credential_identity(credential) == identity:
                return credential
        return None
