"""The wire under the upstream client: one pooled session, its TLS trust and proxy, and the one send.

``UpstreamTransport`` owns the aiohttp sessions (with the ``--resolve`` overrides), one SSL context
per set of trusted CA files, the outbound proxy and its credentials, and the scrubbing of secrets
from failure messages.  ``send`` puts one request on the wire - never following a redirect, so the
caller decides where credentials go - and feeds the registry's rate-limit headers to the tracker.
The plain functions here say which headers go upstream and how the session is configured.

Redirect hops to hosts the operator did not name go through a second, *guarded* session whose
resolver applies the redirect policy to every address before it is dialled (``redirect_policy``);
its pool only ever holds connections to checked addresses.  Only a failure to reach the registry's
own origin is ``UpstreamUnreachable`` (what trips the per-registry breaker).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import AsyncIterable, Callable, Mapping
from pathlib import Path

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from appliance.config.model import Config, RegistryConfig, Timeouts
from appliance.errors import UpstreamError, UpstreamRefused, UpstreamUnreachable
from appliance.upstream.addresses import resolve_system
from appliance.upstream.failures import collect_secrets, describe_failure, scrub
from appliance.upstream.ratelimit import RateLimitTracker
from appliance.upstream.redirect_policy import RedirectPolicy, RedirectRefused
from appliance.upstream.resolver import OverrideResolver

USER_AGENT = "registry-appliance/0.1"
_NEVER_FORWARD = frozenset(
    {
        "host",
        "authorization",
        "proxy-authorization",
        "proxy-connection",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "cookie",
        # The engine stores bytes exactly as the registry sent them: no transfer compression.
        "accept-encoding",
    }
)
BODY_HEADERS = frozenset({"content-length", "content-type", "content-range", "content-encoding"})

# Trust settings -> one SSLContext each: ``None`` means "do not verify".
TrustKey = tuple[str, ...] | None


def client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    # No total: a multi-GB blob may take long; a stalled one trips sock_read instead.
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeouts.proxy_connect,
        sock_connect=timeouts.proxy_connect,
        sock_read=timeouts.proxy_read,
    )


def split_proxy(value: str | None) -> tuple[URL | None, dict[str, str] | None]:
    """The outbound proxy URL without its credentials, and those as a header apart (never logged)."""
    if not value:
        return None, None
    url = URL(value)
    if not url.user:
        return url, None
    raw = f"{url.user}:{url.password or ''}".encode()
    return url.with_user(None), {"Proxy-Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def forwardable(headers: Mapping[str, str] | None, *, with_body: bool) -> CIMultiDict[str]:
    """The client's headers that may go upstream, plus ours (identity encoding, User-Agent)."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in (headers or {}).items():
        lower = name.lower()
        if lower in _NEVER_FORWARD or (not with_body and lower in BODY_HEADERS):
            continue
        out.add(name, value)
    out["Accept-Encoding"] = "identity"
    out.setdefault("User-Agent", USER_AGENT)
    return out


def origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.host or "").lower(), url.port)


def registry_url(registry: RegistryConfig) -> URL:
    return URL(f"{registry.scheme.value}://{registry.host}/")


def build_ssl_context(ca_files: tuple[str, ...]) -> ssl.SSLContext:
    """The system store plus extra CA files (blocking file reads: run in an executor)."""
    context = ssl.create_default_context()
    for path in ca_files:
        context.load_verify_locations(cafile=path)
    return context


class UpstreamTransport:
    """The pooled session to upstream registries and everything that shapes one send over it."""

    def __init__(self, config: Config, rate: RateLimitTracker, clock: Callable[[], float]) -> None:
        self._config = config
        self._rate = rate
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._resolver: OverrideResolver | None = None
        self._guarded_session: aiohttp.ClientSession | None = None
        self._guarded_resolver: OverrideResolver | None = None
        self._own: tuple[frozenset[str], frozenset[int]] = (frozenset(), frozenset())
        self._policy = RedirectPolicy.from_config(config)
        self._ssl_contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._proxy, self._proxy_headers = split_proxy(config.upstream_proxy)
        self._secrets = collect_secrets(config)

    async def start(self) -> None:
        if self._session is not None:
            return
        self._resolver = OverrideResolver(self._config.resolve, ipv4_only=self._config.disable_ipv6)
        self._session = self._new_session(self._resolver)
        # No overrides here: a --resolve name is exempt and never takes the guarded way.
        self._guarded_resolver = OverrideResolver((), ipv4_only=self._config.disable_ipv6, guard=self._guard)
        self._guarded_session = self._new_session(self._guarded_resolver)

    def _new_session(self, resolver: OverrideResolver) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(resolver=resolver, limit=256, limit_per_host=64)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=client_timeout(self._config.timeouts),
            auto_decompress=False,
            trust_env=False,  # the outbound proxy comes from config only, never from our own env
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept-Encoding",),
        )

    async def close(self) -> None:
        for session in (self._session, self._guarded_session):
            if session is not None:
                await session.close()
        self._session = self._guarded_session = None
        for resolver in (self._resolver, self._guarded_resolver):
            if resolver is not None:
                await resolver.close()
        self._resolver = self._guarded_resolver = None

    def set_own(self, addresses: set[str], ports: set[int]) -> None:
        """The appliance's own addresses and listening ports, known once it listens: never a hop."""
        self._own = (frozenset(addresses), frozenset(ports))
        self._policy = RedirectPolicy.from_config(self._config, *self._own)

    @property
    def redirect_policy(self) -> RedirectPolicy:
        return self._policy

    def _guard(self, host: str, port: int, addresses: list[str]) -> None:
        if self._proxy is not None and host == (self._proxy.host or "").lower():
            return  # the configured outbound proxy: the operator's choice, the target is checked apart
        self._policy.check_addresses(host, port, addresses)

    def reconfigure(self, config: Config) -> None:
        """Adopt a reloaded config; the connection pool stays."""
        self._config = config
        # A CA file may have been replaced on disk even when its path did not change; contexts are
        # cheap to rebuild and pooled connections keep the context they were opened with.
        self._ssl_contexts.clear()
        self._proxy, self._proxy_headers = split_proxy(config.upstream_proxy)
        self._secrets = collect_secrets(config)
        self._policy = RedirectPolicy.from_config(config, *self._own)
        if self._resolver is not None:
            self._resolver.update(config.resolve, ipv4_only=config.disable_ipv6)
        if self._guarded_resolver is not None:
            self._guarded_resolver.update((), ipv4_only=config.disable_ipv6)
        for session in (self._session, self._guarded_session):
            connector = session.connector if session is not None else None
            if isinstance(connector, aiohttp.TCPConnector):
                connector.clear_dns_cache()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() was not awaited")
        return self._session

    @property
    def proxy(self) -> URL | None:
        return self._proxy

    @property
    def proxy_headers(self) -> dict[str, str] | None:
        return self._proxy_headers

    @property
    def timeout(self) -> aiohttp.ClientTimeout:
        return client_timeout(self._config.timeouts)

    def scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    async def ssl_for(self, registry: RegistryConfig) -> ssl.SSLContext | bool:
        """The TLS setting for this registry, its realm and the CDNs it redirects to.

        Also computed for plain-HTTP registries: their realm or CDN may still be HTTPS.
        """
        if not self._config.verify_ssl or registry.insecure:
            return False
        files = tuple(str(path) for path in (self._config.upstream_ca, registry.ca_file) if path is not None)
        context = self._ssl_contexts.get(files)
        if context is None:
            loop = asyncio.get_running_loop()
            try:
                context = await loop.run_in_executor(None, build_ssl_context, files)
            except (OSError, ssl.SSLError) as exc:
                names = ", ".join(Path(f).name for f in files)
                raise UpstreamError(registry.host, f"cannot load the CA file(s) {names}: {exc}") from exc
            context = self._ssl_contexts.setdefault(files, context)
        return context

    async def send(
        self,
        registry: RegistryConfig,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        authorization: str | None,
        body: AsyncIterable[bytes] | None,
        ssl_param: ssl.SSLContext | bool,
        *,
        guarded: bool = False,
    ) -> aiohttp.ClientResponse:
        """One request on the wire.  ``guarded``: a redirect hop to a host nobody configured."""
        session = self.session
        if guarded:
            if self._guarded_session is None:
                raise RuntimeError("UpstreamClient.start() was not awaited")
            session = self._guarded_session
            if self._proxy is not None:
                await self._check_behind_proxy(registry, url)
        send_headers = CIMultiDict(headers)
        if authorization:
            send_headers["Authorization"] = authorization
        if self._proxy_headers and url.scheme == "http":
            # aiohttp puts proxy_headers on CONNECT only; a plain-HTTP request carries them itself.
            send_headers.update(self._proxy_headers)
        try:
            response = await session.request(
                method,
                url,
                headers=send_headers,
                data=body,
                ssl=ssl_param,
                allow_redirects=False,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
                timeout=client_timeout(self._config.timeouts),
            )
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, RedirectRefused):
                raise UpstreamRefused(registry.host, exc.os_error.reason) from None
            raise self._failure(registry, url, exc) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._failure(registry, url, exc) from exc
        if origin(url) == origin(registry_url(registry)):
            self._rate.observe(registry.host, response.status, response.headers, self._clock())
        return response

    def _failure(self, registry: RegistryConfig, url: URL, exc: BaseException) -> UpstreamError:
        message = self.scrub(describe_failure(exc, url.host or "?"))
        if origin(url) == origin(registry_url(registry)):
            return UpstreamUnreachable(registry.host, message)
        return UpstreamError(registry.host, message)

    async def _check_behind_proxy(self, registry: RegistryConfig, url: URL) -> None:
        """Behind an outbound proxy the proxy resolves the name: check our own resolution first.

        Weaker than the connect-time check (the proxy may resolve differently), so the proxy's own
        policy is the last word there; it still stops a redirect to a name that points inward.
        """
        host = url.host or ""
        port = url.port or 443
        try:
            family = socket.AF_INET if self._config.disable_ipv6 else socket.AF_UNSPEC
            addresses = await resolve_system(host, port, family=family)
        except OSError:
            return  # unresolvable here: the proxy may know it (split horizon); it decides
        try:
            self._policy.check_addresses(host, port, addresses)
        except RedirectRefused as exc:
            raise UpstreamRefused(registry.host, exc.reason) from None
