"""The composition root: builds every collaborator from a Config (``runner.py`` runs it).

Nothing else creates long-lived objects; collaborators are passed in, never looked up.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import ssl
import time
from dataclasses import dataclass, field, replace

from aiohttp import web

from appliance import __version__, metrics
from appliance.access.network import client_floor
from appliance.access.verdicts import Authenticator
from appliance.accesslog import AccessLog
from appliance.cache import BlobCache, ManifestCache
from appliance.cache.lock import CacheLock
from appliance.config.model import (
    Config,
    RegistryConfig,
    ResolveOverride,
    Scheme,
    normalize_host,
    split_host_port,
)
from appliance.errors import ApplianceError, ConfigError, ErrorCode, RegistryError, UpstreamError
from appliance.events import EventBus
from appliance.front import mirror, tunnel, tunnel_policy
from appliance.front.ca import CertificateAuthority
from appliance.front.leaf_certs import LeafCertificates
from appliance.front.server import ConnContext, ConnectRefused, FrontDoor, TunnelIO
from appliance.front.setup_scripts import SetupKind, render_setup, valid_address
from appliance.registry import oci, request_input
from appliance.registry.api import NotRegistryApi, RegistryProxy
from appliance.registry.oci import Endpoint
from appliance.registry.pullahead import PullAhead
from appliance.registry.request_input import BadRequest, shown
from appliance.registry.responses import error_response, ping_response
from appliance.stats import Stats
from appliance.tasks import OwnedTasks
from appliance.upstream import challenges as auth
from appliance.upstream.client import UpstreamClient
from appliance.upstream.ratelimit import RateLimitState

log = logging.getLogger("appliance.engine")

# Settings a hot reload cannot change: they are bound when the engine starts.
RESTART_ONLY = (
    "listen_host",
    "listen_port",
    "cache_dir",
    "ca_dir",
    "ca_cert_file",
    "ca_key_file",
    "control_socket",
    "cache",
)


@dataclass
class Engine:
    """A running appliance: front door, cache, upstream client and event bus."""

    config: Config
    ca: CertificateAuthority
    events: EventBus = field(default_factory=EventBus)
    started: float = field(default_factory=time.time)
    listen_addresses: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.leafs = LeafCertificates(self.ca)
        self.upstream = UpstreamClient(self.config)
        self.blobs = BlobCache.on_disk(
            self.config.cache_dir,
            max_size=self.config.cache.max_size,
            inactive=self.config.cache.inactive,
            min_free_disk=self.config.cache.min_free_disk,
        )
        self.manifests = ManifestCache(self.blobs)
        self.pull_ahead = PullAhead(self.blobs, per_image=self.config.cache.pull_ahead, events=self.events)
        self.proxy = RegistryProxy(
            config=lambda: self.config,
            upstream=self.upstream,
            blobs=self.blobs,
            manifests=self.manifests,
            events=self.events,
            pull_ahead=self.pull_ahead if self.pull_ahead.enabled else None,
        )
        self.access_log = AccessLog(self.config.log_format)
        self.events.add_listener(self.access_log)
        self.door = FrontDoor(
            handler=self.handle,
            intercept=self.intercept,
            tunnel=self.serve_tunnel,
            timeouts=self.config.timeouts,
            limits=self.config.limits,
            floor=client_floor(self.config.allow_clients, self.config.access.enabled),
        )
        # Checks client credentials (the front door calls it once identity is wired in, issue 17).
        self.authenticator = Authenticator(self.config.access)
        self.own_addresses: set[str] = set()
        self.cache_lock = CacheLock(self.config.cache_dir)
        self.stats = Stats()
        self.events.add_listener(self.stats)
        self._background = OwnedTasks()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.cache_lock.acquire)
        await self.upstream.start()
        await self.blobs.start()
        self.listen_addresses = await self.door.listen(self.config.listen_host, self.config.listen_port)
        self.tls_addresses: list[tuple[str, int]] = []
        if self.config.tls_listen is not None:
            context = await asyncio.to_thread(self._tls_listener_context)
            host, port = self.config.tls_listen
            self.tls_addresses = await self.door.listen(host, port, tls=context)
        listening = self.listen_addresses + self.tls_addresses
        self.own_addresses = tunnel_policy.own_interface_addresses() | {a for a, _ in listening}
        self.upstream.set_own(self.own_addresses, {port for _, port in listening})
        self._background.spawn(self.warm_up(), name="warm-up")

    async def settled(self) -> None:
        """Wait for the background work started with the engine (the warm-up) to finish."""
        await self._background.wait_idle()

    async def warm_up(self) -> None:
        """What the first request to each registry would otherwise wait for, done after start-up.

        Its leaf certificate (and its token realms') and its upstream TLS context (loading a CA
        bundle takes tens of ms): measured, the first blob request after a start took 66 ms
        against 16 ms for the next ones; with this, 24 ms.  Runs behind the listener, so start-up
        does not wait for it.
        """
        for registry in self.config.registries:
            names = [split_host_port(host)[0] for host in (registry.host, *registry.auth_hosts)]
            try:
                await self.upstream.prepare(registry)
                for name in names:
                    await self.leafs.server_context_async(name)
            except (ApplianceError, ValueError, OSError) as exc:
                # Whatever fails here fails again, and is reported, on the first request.
                log.debug("warm-up for %s skipped: %s", registry.host, exc)

    def _tls_listener_context(self) -> ssl.SSLContext:
        """The TLS listener's context: the user's certificate, or one from our CA per SNI name."""
        config = self.config
        if config.tls_cert_file is not None and config.tls_key_file is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(str(config.tls_cert_file), f"cannot use it for tls_listen: {exc}") from None
            return context
        host = config.tls_listen[0] if config.tls_listen else "localhost"
        return self.leafs.sni_server_context("localhost" if host in ("", "*", "0.0.0.0", "::") else host)

    async def close(self) -> None:
        await self._background.cancel_all()
        await self.door.close()
        await self.pull_ahead.close()
        await self.blobs.close()
        await self.upstream.close()
        self.cache_lock.release()

    def reload(self, config: Config) -> tuple[str, ...]:
        """Hot reload: apply ``config``, except settings bound at start-up, which are returned."""
        previous = self.config
        pending = tuple(name for name in RESTART_ONLY if getattr(config, name) != getattr(previous, name))
        # Keep what is really running visible in engine.config until a restart.
        self.apply(replace(config, **{name: getattr(previous, name) for name in pending}))
        self.access_log.fmt = config.log_format
        return pending

    def rate_limits(self) -> dict[str, RateLimitState]:
        """Registry host -> the rate-limit facts it last sent."""
        states = ((r.host, self.upstream.rate_limit(r)) for r in self.config.registries)
        return {host: state for host, state in states if state is not None}

    async def metrics_response(self) -> web.Response:
        data = metrics.MetricsInput(
            version=__version__,
            started=self.started,
            stats=self.stats,
            usage=await self.blobs.usage(),
            inflight=self.blobs.inflight(),
            events_dropped=self.events.dropped_total,
            event_subscribers=self.events.subscribers,
            rate_limits=self.rate_limits(),
        )
        return web.Response(text=metrics.render(data), headers={"Content-Type": metrics.CONTENT_TYPE})

    def apply(self, config: Config) -> None:
        """Swap in a new configuration without dropping connections (hot reload)."""
        self.config = config
        self.upstream.reconfigure(config)
        self.door.reconfigure(config.timeouts, config.limits)
        self.door.floor = client_floor(config.allow_clients, config.access.enabled)
        self.authenticator.update(config.access)

    # -- routing ---------------------------------------------------------------------------------

    def _realm_authorization(self, realm: str, request: web.BaseRequest) -> str | None:
        """Seed behaviour on a token realm (``auth.docker.io``): Basic credentials for the client.

        The ``scope`` parameter names the repository, so a repository-prefix credential
        (``docker.io/orgA``) is chosen over the host's - the seed's "several Docker Hub accounts".
        """
        scope = request.rel_url.query.get("scope", "")
        parts = scope.split(":")
        repository = parts[1] if len(parts) >= 3 and parts[0] == "repository" else None
        for registry in self.config.registries:
            if normalize_host(realm) in (normalize_host(h) for h in registry.auth_hosts):
                credential = auth.choose_credential(self.config.credentials, registry, repository)
                if credential is not None:
                    return auth.basic_authorization(credential)
        return None

    def intercepted(self, host: str, port: int) -> RegistryConfig | None:
        name = host if port == 443 else f"{host}:{port}"
        registry = self.config.registry_for(name)
        if registry is not None:
            return registry
        for candidate in self.config.registries:
            if normalize_host(name) in (normalize_host(h) for h in candidate.auth_hosts):
                return RegistryConfig(host=name)
        return None

    async def intercept(self, host: str, port: int) -> ssl.SSLContext | None:
        if self.intercepted(host, port) is None:
            return None
        return await self.leafs.server_context_async(host)

    async def serve_tunnel(self, host: str, port: int, io: TunnelIO) -> None:
        override = self._override(host, port)
        decision = await tunnel_policy.check_tunnel(
            self.config.tunnel,
            host,
            port,
            own_addresses=self.own_addresses,
            own_ports={port for _, port in self.listen_addresses},
            resolve=self._tunnel_resolver,
        )
        if not decision.allowed:
            reason = shown(decision.reason)
            log.info("CONNECT %s:%d from %s refused: %s", shown(host), port, io.client, reason)
            await io.refuse(decision.http_status, decision.reason)
            return
        timeouts = self.config.timeouts
        try:
            up_reader, up_writer = await tunnel.open_upstream(
                list(decision.addresses),
                override.address_port if override else port,
                timeouts.proxy_connect_connect,
                name=host,
            )
        except UpstreamError as exc:
            await io.refuse(502, exc.message)
            return
        await io.send_ok()
        await tunnel.splice(io.reader, io.writer, up_reader, up_writer, timeouts.proxy_connect_read)

    def _override(self, host: str, port: int) -> ResolveOverride | None:
        for override in self.config.resolve:
            if normalize_host(override.host) == normalize_host(host) and override.port in (None, port):
                return override
        return None

    async def _tunnel_resolver(self, host: str, port: int) -> list[str]:
        override = self._override(host, port)
        if override is not None:
            return [override.address]
        resolver = tunnel_policy.system_resolver(ipv4_only=self.config.disable_ipv6)
        return list(await resolver(host, port))

    async def handle(self, request: web.BaseRequest, context: ConnContext) -> web.StreamResponse:
        try:
            return await self._handle(request, context)
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
        target = context.target
        if target is not None:
            host, _, port = target.partition(":")
            registry = self.intercepted(host, int(port) if port else 443)
            if registry is None:  # removed by a hot reload while the tunnel was open
                raise RegistryError(404, ErrorCode.NAME_UNKNOWN, f"{target} is no longer served")
            if self.config.registry_for(target) is not None:
                return await self._registry_host(request, registry, request.path, context)
            return await self._realm_host(request, registry, target, context)
        if request.url.is_absolute() and request.url.scheme == "http" and request.raw_path.startswith("http"):
            return await self._forward_plain_http(request, context)
        path = request.path
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
            document = render_setup(SetupKind(setup), address, self.config.registries)
            return web.Response(text=document.text, content_type=document.content_type)
        if path == "/v2" or path.startswith("/v2/"):
            return await self._mirror(request, context)
        raise RegistryError(404, ErrorCode.NAME_UNKNOWN, f"nothing is served at {path}")

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

    async def _forward_plain_http(self, request: web.BaseRequest, context: ConnContext) -> web.StreamResponse:
        host = request.url.host or ""
        name = host if request.url.port in (None, 80) else f"{host}:{request.url.port}"
        registry = self.config.registry_for(name)
        if registry is None or registry.scheme is not Scheme.HTTP:
            raise RegistryError(
                403,
                ErrorCode.DENIED,
                f"plain-HTTP forwarding is only for configured http registries, not {name}",
            )
        return await self._registry_host(request, registry, request.url.path, context)

    async def _registry_host(
        self, request: web.BaseRequest, registry: RegistryConfig, path: str, context: ConnContext
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
            client = context.client
            return await self.proxy.relay_token(request, registry, path, query, client, authorization=None)
        return await self.proxy.handle(request, registry, path, context.client, query=query)

    async def _realm_host(
        self, request: web.BaseRequest, registry: RegistryConfig, target: str, context: ConnContext
    ) -> web.StreamResponse:
        """A request inside a tunnel to a token realm host (a registry's ``auth_hosts``).

        A token request gets the seed-style Basic credential for the repository in its scope; any
        other plain path is relayed with the client's own Authorization only.
        """
        path, query = request.path, tuple(request.rel_url.query.items())
        injected = None
        if request_input.is_token_request(request.method, path, query):
            injected = self._realm_authorization(target, request)
        return await self.proxy.relay_token(
            request, registry, path, query, context.client, authorization=injected
        )

    async def _mirror(self, request: web.BaseRequest, context: ConnContext) -> web.StreamResponse:
        if mirror.is_bare_ping(request.path, request.rel_url.query):
            return ping_response()
        target = mirror.route(self.config, request.path, request.rel_url.query)
        client = context.client
        return await self.proxy.handle(request, target.registry, target.path, client, query=target.query)


def _base_url(request: web.BaseRequest) -> str:
    host = request.headers.get("Host") or "localhost:3128"
    return f"http://{host}"


__all__ = ["ConnectRefused", "Engine", "oci"]
