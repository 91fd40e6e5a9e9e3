"""The composition root: builds every collaborator from a Config (``runner.py`` runs it).

Nothing else creates long-lived objects; collaborators are passed in, never looked up.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from appliance.access.network import client_floor
from appliance.access.verdicts import Authenticator
from appliance.accesslog import AccessLog
from appliance.cache import BlobCache, ManifestCache
from appliance.cache.lock import CacheLock
from appliance.config.model import Config, split_host_port
from appliance.errors import ApplianceError, ConfigError
from appliance.events import EventBus
from appliance.front import client_ca, tunnel_policy
from appliance.front.blind_tunnel import BlindTunnels
from appliance.front.ca import CertificateAuthority
from appliance.front.identity import ClientIdentification
from appliance.front.intermediate import InterceptionCertificates, intercepted_names
from appliance.front.leaf_certs import LeafCertificates
from appliance.front.router import Router
from appliance.front.server import FrontDoor
from appliance.registry.api import RegistryProxy
from appliance.registry.pullahead import PullAhead
from appliance.stats import Stats
from appliance.tasks import OwnedTasks
from appliance.upstream.client import UpstreamClient

if TYPE_CHECKING:
    from appliance.fleet.service import FleetService

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
    "fleet",
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
        self.leaf_certs = InterceptionCertificates(self.ca, intercepted_names(self.config))
        self.upstream = UpstreamClient(self.config)
        self.blobs = BlobCache.on_disk(self.config.cache_dir, self.config.cache)
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
        self.stats = Stats()
        self.events.add_listener(self.stats)
        # Checks client credentials; the identification turns them into identities per request.
        self.authenticator = Authenticator(self.config.access)
        self.identification = ClientIdentification(
            config=lambda: self.config, authenticator=self.authenticator
        )
        self.router = Router(
            config=lambda: self.config,
            proxy=self.proxy,
            leaf_certs=self.leaf_certs,
            ca=self.ca,
            pull_ahead=self.pull_ahead,
            stats=self.stats,
            blobs=self.blobs,
            events=self.events,
            upstream=self.upstream,
            started=self.started,
            identification=self.identification,
        )
        # Several replicas sharing one bucket (issue 18): the tier under the blob cache and its endpoint.
        self.fleet: FleetService | None = None
        if self.config.fleet.enabled:
            # Imported only here: the S3 client costs ~0.4 s of start-up to every engine otherwise.
            from appliance.fleet.service import FleetService

            self.fleet = FleetService(self.config.fleet, self.blobs)
            self.router.internal = self.fleet.handle
            self.router.fleet_status = self.fleet.status
        self.tunnels = BlindTunnels(
            config=lambda: self.config, authorizer=self.proxy.authorizer, events=self.events
        )
        self.door = FrontDoor(
            handler=self.router.handle,
            intercept=self.router.intercept,
            tunnel=self.tunnels.serve_tunnel,
            timeouts=self.config.timeouts,
            limits=self.config.limits,
            floor=client_floor(self.config.allow_clients, self.config.access.enabled),
            identify=self.router.identify_connect,
            certificate_identity=self.identification.certificate_identity,
        )
        self.own_addresses: set[str] = set()
        self.cache_lock = CacheLock(self.config.cache_dir)
        self._background = OwnedTasks()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.cache_lock.acquire)
        await self.upstream.start()
        await self.blobs.start()
        if self.fleet is not None:
            # Probes the store first: one that ignores conditional writes stops the start here.
            try:
                await self.fleet.start()
            except BaseException:
                await self.blobs.close()
                await self.upstream.close()
                self.cache_lock.release()
                raise
        self.listen_addresses = await self.door.listen(self.config.listen_host, self.config.listen_port)
        self.tls_addresses: list[tuple[str, int]] = []
        if self.config.tls_listen is not None:
            context = await asyncio.to_thread(self._tls_listener_context)
            host, port = self.config.tls_listen
            self.tls_addresses = await self.door.listen(host, port, tls=context)
        listening = self.listen_addresses + self.tls_addresses
        self.own_addresses = tunnel_policy.own_interface_addresses() | {a for a, _ in listening}
        self.upstream.set_own(self.own_addresses, {port for _, port in listening})
        self.tunnels.set_own(self.own_addresses, {port for _, port in self.listen_addresses})
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
                    await self.leaf_certs.server_context_async(name)
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
            if client_ca.trust_client_ca(context, config.ca_dir):
                log.info(
                    "the TLS listener accepts client certificates from %s", config.ca_dir / "client-ca.crt"
                )
            return context
        host = config.tls_listen[0] if config.tls_listen else "localhost"
        # Client certificates from the client CA (if there is one yet) identify Docker Engine and
        # other mirror clients that cannot send a password; every context the listener's SNI
        # callback switches to must ask for them too, or OpenSSL verifies against its empty store.
        trusts = client_ca.trust_client_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), config.ca_dir)

        def ask_for_client_certificates(context: ssl.SSLContext) -> None:
            client_ca.trust_client_ca(context, config.ca_dir)

        # Signed by the root, not the constrained intermediate: the names clients reach the
        # appliance by are not registries and are not known in advance (docs/security.md).
        leaves = LeafCertificates(self.ca, configure=ask_for_client_certificates if trusts else None)
        if trusts:
            log.info("the TLS listener accepts client certificates from %s", config.ca_dir / "client-ca.crt")
        return leaves.sni_server_context("localhost" if host in ("", "*", "0.0.0.0", "::") else host)

    async def close(self) -> None:
        await self._background.cancel_all()
        await self.door.close()
        await self.pull_ahead.close()
        if self.fleet is not None:
            await self.fleet.close()
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

    def apply(self, config: Config) -> None:
        """Swap in a new configuration without dropping connections (hot reload)."""
        self.config = config
        self.leaf_certs.reconfigure(intercepted_names(config))
        self.upstream.reconfigure(config)
        self.door.reconfigure(config.timeouts, config.limits)
        self.door.floor = client_floor(config.allow_clients, config.access.enabled)
        self.authenticator.update(config.access)
