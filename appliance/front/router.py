"""The request router: what each request on the listen port (or inside a tunnel) is, and who serves it.

Every HTTP request the front door parses - plain, or decrypted inside an intercepted tunnel - comes
to ``Router.handle``.  Inside a tunnel it goes to the registry API of the registry the CONNECT named
(or, for one of its token realm hosts, to the token relay); an absolute ``http://`` URI is
forwarded to a configured plain-HTTP registry; otherwise the path decides: ``/`` and ``/healthz``,
``/metrics``, ``/ca.crt``, ``/setup/...``, the fleet's ``/_fleet/...`` (replicas only, HMAC), or mirror
mode under ``/v2/``.  For a registry request
the router resolves the registry once, against the config of the moment, into a
``RequestContext`` that the registry layer serves from.

The intercept decision (``intercepted``, ``intercept``) is here, not with the tunnel code: which
CONNECT authorities get our TLS is the same question as which registry serves the requests inside
them, and answering both in one place keeps them from disagreeing after a reload.  CONNECTs that are
not intercepted go to ``blind_tunnel.BlindTunnels`` (policy, dialing, splicing: network questions).

The router reads the config through a callable on every request, so a hot reload reaches open
tunnels too: a request inside a tunnel whose registry was removed gets ``404 NAME_UNKNOWN``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from aiohttp import web
from multidict import CIMultiDict

from appliance import __version__, metrics, oci
from appliance.access.bearer import parse_scopes
from appliance.access.identities import Identity
from appliance.cache import BlobCache
from appliance.config.model import Config, RegistryConfig, Scheme, normalize_host
from appliance.errors import ErrorCode, RegistryError
from appliance.events import AccessResult, EventBus
from appliance.front import mirror
from appliance.front.ca import CertificateAuthority
from appliance.front.identity import (
    TOKEN_PATH,
    AuthenticationRequired,
    ClientIdentification,
    parse_connect_headers,
    single,
)
from appliance.front.intermediate import InterceptionCertificates
from appliance.front.server import ConnContext, ConnectRefused, parse_connect_target
from appliance.front.setup_scripts import SetupKind, render_setup, valid_address
from appliance.logsafe import shown
from appliance.oci import Endpoint
from appliance.registry import request_input
from appliance.registry.api import NotRegistryApi, RegistryProxy
from appliance.registry.authorize import Authorization, decision_event
from appliance.registry.pullahead import PullAhead
from appliance.registry.request_context import Authority, ClientAddress, Mode, RequestContext
from appliance.registry.request_input import BadRequest
from appliance.registry.responses import error_response, ping_response
from appliance.stats import Stats
from appliance.upstream import challenges as auth
from appliance.upstream.client import UpstreamClient

log = logging.getLogger("appliance.engine")


class Interception(NamedTuple):
    """A CONNECT authority the appliance terminates, and the registry its requests are served for."""

    registry: RegistryConfig
    realm: bool  # a token realm host of ``registry`` (its own default settings), not a registry host


@dataclass
class Router:
    """Routes every parsed client request; collaborators are passed in by the engine."""

    config: Callable[[], Config]
    proxy: RegistryProxy
    leaf_certs: InterceptionCertificates
    ca: CertificateAuthority
    pull_ahead: PullAhead
    stats: Stats
    blobs: BlobCache
    events: EventBus
    upstream: UpstreamClient
    started: float
    identification: ClientIdentification
    # The fleet's internal endpoint (/_fleet/...), when this replica is part of one: it checks its
    # own HMAC and is never subject to client identities or ACLs (fleet/endpoint.py).
    internal: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]] | None = None
    # The fleet's numbers for /metrics (FleetService.status), read at each scrape; None when fleet is off.
    fleet_status: metrics.FleetProvider | None = None

    # -- the intercept decision ------------------------------------------------------------------

    def intercepted(self, host: str, port: int) -> Interception | None:
        name = str(Authority(host, port))
        config = self.config()
        registry = config.registry_for(name)
        if registry is not None:
            return Interception(registry, realm=False)
        for candidate in config.registries:
            if normalize_host(name) in (normalize_host(h) for h in candidate.auth_hosts):
                return Interception(RegistryConfig(host=name), realm=True)
        return None

    async def intercept(self, host: str, port: int) -> ssl.SSLContext | None:
        if self.intercepted(host, port) is None:
            return None
        return await self.leaf_certs.server_context_async(host)

    # -- identity --------------------------------------------------------------------------------

    async def identify_connect(
        self, head: bytes, client: str, bound: Identity | None, url: str
    ) -> Identity | None:
        """The front door's question at a CONNECT: who is it (``Proxy-Authorization``)?"""
        header = single(parse_connect_headers(head).get("proxy-authorization"))
        try:
            return await self.identification.proxy(header, _address_of(client), bound, url, "CONNECT")
        except AuthenticationRequired as exc:
            host, port = parse_connect_target(head)
            self._audit_refusal(client, str(Authority(host, port)), "CONNECT", exc)
            raise ConnectRefused(exc.status, exc.reason, phrase=exc.reason, headers=exc.headers) from None

    def _audit_refusal(self, client: str, where: str, method: str, exc: AuthenticationRequired) -> None:
        """The audit record of a client the front door sent back to authenticate (401/407)."""
        decided = Authorization(AccessResult.UNAUTHENTICATED, exc.reason)
        self.events.publish(
            decision_event(client, where, method, decided, http_status=exc.status, message=exc.reason)
        )

    # -- routing ---------------------------------------------------------------------------------

    def _realm_authorization(self, realm: str, request: web.BaseRequest) -> str | None:
        """Seed behaviour on a token realm (``auth.docker.io``): Basic credentials for the client.

        The ``scope`` parameter names the repository, so a repository-prefix credential
        (``docker.io/orgA``) is chosen over the host's - the seed's "several Docker Hub accounts".
        """
        scope = request.rel_url.query.get("scope", "")
        parts = scope.split(":")
        repository = parts[1] if len(parts) >= 3 and parts[0] == "repository" else None
        config = self.config()
        for registry in config.registries:
            if normalize_host(realm) in (normalize_host(h) for h in registry.auth_hosts):
                credential = auth.choose_credential(config.credentials, registry, repository)
                if credential is not None:
                    return auth.basic_authorization(credential)
        return None

    async def handle(self, request: web.BaseRequest, context: ConnContext) -> web.StreamResponse:
        try:
            return await self._handle(request, context)
        except AuthenticationRequired as exc:
            where = context.target or request.headers.get("Host") or "-"
            self._audit_refusal(context.client, where, request.method, exc)
            code = ErrorCode.UNAUTHORIZED
            response = error_response(RegistryError(exc.status, code, exc.reason, headers=exc.headers))
            if exc.status == 407:
                response.set_status(407, exc.reason)
            return response
        except (BadRequest, NotRegistryApi) as exc:
            # Client input refused before anything went upstream: one line, no traceback.
            log.warning(
                "%s %s %s%s refused: %s",
                context.client,
                shown(request.method, 20),
                context.target or "",
                shown(request.path),
                exc.message,
            )
            return error_response(exc)
        except RegistryError as exc:
            return error_response(exc)

    async def _handle(self, request: web.BaseRequest, context: ConnContext) -> web.StreamResponse:
        if context.target_host is not None:
            authority = Authority(context.target_host, context.target_port or 443)
            served = self.intercepted(authority.host, authority.port)
            if served is None:  # removed by a hot reload while the tunnel was open
                raise RegistryError(404, ErrorCode.NAME_UNKNOWN, f"{authority} is no longer served")
            misdirected = _misdirected(request, context, authority)
            if misdirected is not None:
                log.warning("%s: %s", context.client, misdirected)
                raise RegistryError(421, ErrorCode.DENIED, misdirected)
            tunnelled = self._context(request, Mode.TUNNEL, served.registry, authority, context.identity)
            if not served.realm:
                return await self._registry_host(request, tunnelled, request.path)
            return await self._realm_host(request, tunnelled)
        if request.url.is_absolute() and request.url.scheme == "http" and request.raw_path.startswith("http"):
            return await self._forward_plain_http(request, context)
        path = request.path
        if path.startswith("/_fleet/") and self.internal is not None:
            return await self.internal(request)
        if path == "/" or path == "/healthz":
            return self._health(request)
        if path == "/metrics":
            return await self.metrics_response()
        if path == "/ca.crt":
            return web.Response(body=self.ca.cert_pem, content_type="application/x-x509-ca-cert")
        if path.startswith("/setup/"):
            setup = path.removeprefix("/setup/")
            if setup not in set(SetupKind):
                choices = ", ".join(SetupKind)
                raise RegistryError(404, ErrorCode.NAME_UNKNOWN, f"no setup for {setup}: try {choices}")
            address = _base_url(request).removeprefix("http://")
            if not valid_address(address):
                raise RegistryError(400, ErrorCode.UNSUPPORTED, "the Host header is not a HOST:PORT address")
            document = render_setup(SetupKind(setup), address, self.config().registries)
            return web.Response(text=document.text, content_type=document.content_type)
        if path == "/v2" or path.startswith("/v2/"):
            return await self._mirror(request, context)
        if path == TOKEN_PATH:
            return await self._token(request, context)
        raise RegistryError(404, ErrorCode.NAME_UNKNOWN, f"nothing is served at {path}")

    @staticmethod
    def _context(
        request: web.BaseRequest,
        mode: Mode,
        registry: RegistryConfig,
        authority: Authority | None = None,
        identity: Identity | None = None,
    ) -> RequestContext:
        client = _client_address(request)
        return RequestContext(
            client=client, mode=mode, registry=registry, authority=authority, identity=identity
        )

    def _health(self, request: web.BaseRequest) -> web.Response:
        body = {
            "service": "registry-appliance",
            "version": __version__,
            "status": "ok",
            "uptime": round(time.time() - self.started, 1),
            # Registry requests being served; 0 means every finished one is in the access log.
            "requests_active": self.proxy.active,
            # Pull-aheads running (each started before the request that triggered it was answered).
            "pull_aheads_active": self.pull_ahead.running,
            "message": "docker-registry-proxy: The docker caching proxy is working!",
        }
        return web.json_response(body)

    async def metrics_response(self) -> web.Response:
        data = metrics.MetricsInput(
            version=__version__,
            started=self.started,
            stats=self.stats,
            usage=await self.blobs.usage(),
            inflight=self.blobs.inflight(),
            events_dropped=self.events.dropped_total,
            event_subscribers=self.events.subscribers,
            rate_limits=self.upstream.rate_limits(),
            fleet=self.fleet_status() if self.fleet_status is not None else None,
        )
        return web.Response(text=metrics.render(data), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def _forward_plain_http(self, request: web.BaseRequest, context: ConnContext) -> web.StreamResponse:
        header = single(request.headers.getall("Proxy-Authorization", []))
        scheme = "https" if context.secure else "http"
        url = f"{scheme}://USER:PASSWORD@{_sockname(request.transport) or 'APPLIANCE:3128'}"
        source = _client_address(request).host
        identity = await self.identification.proxy(
            header, source, context.identity, url, "plain-HTTP request"
        )
        host = request.url.host or ""
        name = host if request.url.port in (None, 80) else f"{host}:{request.url.port}"
        registry = self.config().registry_for(name)
        if registry is None or registry.scheme is not Scheme.HTTP:
            raise RegistryError(
                403,
                ErrorCode.DENIED,
                f"plain-HTTP forwarding is only for configured http registries, not {name}",
            )
        forwarded = self._context(request, Mode.FORWARD, registry, identity=identity)
        return await self._registry_host(request, forwarded, request.url.path)

    async def _registry_host(
        self, request: web.BaseRequest, context: RequestContext, path: str
    ) -> web.StreamResponse:
        """A request to a registry's own host (a tunnel, or plain-HTTP forwarding).

        Only the registry API carries the engine's credentials; a token request to a realm on the
        registry's own host (``ghcr.io/token``) is relayed with the client's own Authorization
        only; any other path is refused (``NotRegistryApi``) without reaching the upstream.
        """
        query = tuple(request.rel_url.query.items())
        if oci.parse_route(path).endpoint is Endpoint.OTHER and request_input.is_token_request(
            request.method, path, query
        ):
            return await self.proxy.relay_token(request, context, path, query, authorization=None)
        return await self.proxy.handle(request, context, path, query=query)

    async def _realm_host(self, request: web.BaseRequest, context: RequestContext) -> web.StreamResponse:
        """A request inside a tunnel to a token realm host (a registry's ``auth_hosts``).

        A token request gets the seed-style Basic credential for the repository in its scope; any
        other plain path is relayed with the client's own Authorization only.
        """
        path, query = request.path, tuple(request.rel_url.query.items())
        injected = None
        if request_input.is_token_request(request.method, path, query):
            injected = self._realm_authorization(str(context.authority), request)
        return await self.proxy.relay_token(request, context, path, query, authorization=injected)

    async def _mirror(self, request: web.BaseRequest, context: ConnContext) -> web.StreamResponse:
        identity = None
        if self.identification.enabled:
            # The repository as the client names it (``registry.test/app`` under a path prefix):
            # the name its token request's scope carries.
            repository = oci.parse_route(request.path).repository or None
            identity = await self.identification.mirror(
                single(request.headers.getall("Authorization", [])),
                _client_address(request).host,
                context.identity,
                repository,
                _origin(request, context),
                f"{shown(request.method, 20)} {shown(request.path)}",
            )
            # The client's Authorization was for the appliance: it never goes upstream.
            request = request.clone(headers=_without(request.headers, "Authorization"))
        if mirror.is_bare_ping(request.path, request.rel_url.query):
            return ping_response()
        target = mirror.route(self.config(), request.path, request.rel_url.query)
        mirrored = self._context(request, Mode.MIRROR, target.registry, identity=identity)
        return await self.proxy.handle(request, mirrored, target.path, query=target.query)

    async def _token(self, request: web.BaseRequest, context: ConnContext) -> web.StreamResponse:
        """``GET /auth/token``: the realm of the mirror's Bearer challenge."""
        if not self.identification.enabled:
            raise RegistryError(404, ErrorCode.UNSUPPORTED, "client authentication is off: no token needed")
        if request.method not in ("GET", "POST"):
            raise RegistryError(405, ErrorCode.UNSUPPORTED, "token requests are GET")
        query = request.rel_url.query
        _identity, issued = await self.identification.issue_token(
            single(request.headers.getall("Authorization", [])),
            _client_address(request).host,
            context.identity,
            parse_scopes(query.getall("scope", [])),
            query.get("service", ""),
        )
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued.issued_at))
        body = {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued_at,
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})


def _base_url(request: web.BaseRequest) -> str:
    host = request.headers.get("Host") or "localhost:3128"
    return f"http://{host}"


def _client_address(request: web.BaseRequest) -> ClientAddress:
    # The socket ConnContext.client names, read while the request is being routed (still open).
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return ClientAddress.from_peer(peer)


def _address_of(client: str) -> str:
    """The address part of ``ConnContext.client`` (``[::1]:5000`` -> ``::1``)."""
    if client.startswith("["):
        return client[1:].partition("]")[0]
    return client.rpartition(":")[0] or client


def _sockname(transport: asyncio.BaseTransport | None) -> str | None:
    sock = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sock, tuple) and len(sock) >= 2:
        host = str(sock[0])
        return f"[{host}]:{sock[1]}" if ":" in host else f"{host}:{sock[1]}"
    return None


def _origin(request: web.BaseRequest, context: ConnContext) -> str:
    """The scheme and authority the client used to reach us (the realm of our token challenge)."""
    host = request.headers.get("Host") or _sockname(request.transport) or "localhost"
    return f"{'https' if context.secure else 'http'}://{shown(host, 300)}"


def _without(headers: Mapping[str, str], name: str) -> CIMultiDict[str]:
    return CIMultiDict((key, value) for key, value in headers.items() if key.lower() != name.lower())


def _split_host(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    return host.lower().rstrip("."), int(port) if port.isdigit() else None


def _misdirected(request: web.BaseRequest, context: ConnContext, authority: Authority) -> str | None:
    """Why a request inside an intercepted tunnel is not for the CONNECT authority, or None.

    The tunnel's identity and the registry were chosen for the authority the client named at the
    CONNECT; a TLS server name or ``Host`` naming anything else would borrow them (421).
    """
    if context.sni is not None and context.sni.lower().rstrip(".") != authority.host:
        return f"TLS server name {shown(context.sni)!r} is not the CONNECT authority {authority}"
    host_header = request.headers.getall("Host", [])
    if len(host_header) > 1:
        return "several Host headers"
    if host_header:
        host, port = _split_host(host_header[0].strip())
        if host != authority.host or (port is not None and port != authority.port):
            return f"Host {shown(host_header[0])!r} is not the CONNECT authority {authority}"
    return None
