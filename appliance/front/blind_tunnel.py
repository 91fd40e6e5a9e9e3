"""CONNECTs the appliance does not intercept: check the tunnel policy, dial, answer, splice.

This is the tunnel side of the intercept decision.  ``front/router.py`` decides which CONNECT
authorities are terminated (their requests are routed like any other); the front door sends every
other CONNECT here.  What happens to those bytes is a network question - which addresses a name
resolves to (``--resolve`` overrides first), whether the policy lets a tunnel go there, and copying
bytes both ways (``tunnel.py``) - not a routing one, so it does not live in the router.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.config.model import Config, ResolveOverride, normalize_host
from appliance.errors import UpstreamError
from appliance.events import EventBus
from appliance.front import tunnel, tunnel_policy
from appliance.front.server import TunnelIO
from appliance.logsafe import shown
from appliance.registry.authorize import Authorizer, decision_event

log = logging.getLogger("appliance.engine")


@dataclass
class BlindTunnels:
    """Serves CONNECTs to hosts that are not intercepted, under the config of the moment."""

    config: Callable[[], Config]
    # With access control on, who may tunnel where (the ``tunnel`` action on the CONNECT host), and
    # the bus its audit record goes to; None: no ACL for tunnels (tests of the policy alone).
    authorizer: Authorizer | None = None
    events: EventBus | None = None
    # Set when the listeners are bound (``set_own``): a tunnel may not lead back to the appliance.
    own_addresses: set[str] = field(default_factory=set)
    own_ports: set[int] = field(default_factory=set)

    def set_own(self, addresses: set[str], ports: set[int]) -> None:
        """The appliance's own addresses and listen ports: no tunnel may lead back to them."""
        self.own_addresses = addresses
        self.own_ports = ports

    async def serve_tunnel(self, host: str, port: int, io: TunnelIO) -> None:
        if not await self._authorized(host, port, io):
            return
        override = self._override(host, port)
        decision = await tunnel_policy.check_tunnel(
            self.config().tunnel,
            host,
            port,
            own_addresses=self.own_addresses,
            own_ports=self.own_ports,
            resolve=self._tunnel_resolver,
        )
        if not decision.allowed:
            reason = shown(decision.reason)
            log.info("CONNECT %s:%d from %s refused: %s", shown(host), port, io.client, reason)
            await io.refuse(decision.http_status, decision.reason)
            return
        timeouts = self.config().timeouts
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

    async def _authorized(self, host: str, port: int, io: TunnelIO) -> bool:
        """The ACL's ``tunnel`` decision, before the name is even resolved; False: refused (403/407)."""
        if self.authorizer is None:
            return True
        decided = self.authorizer.tunnel(io.identity, address_of(io.client), normalize_host(host))
        if not decided.result:  # access control off
            return True
        if self.events is not None:
            target = host if port == 443 else f"{host}:{port}"
            self.events.publish(decision_event(io.client, target, "CONNECT", decided))
        if decided.error is None:
            return True
        log.info("CONNECT %s:%d from %s refused: %s", shown(host), port, io.client, shown(decided.reason))
        await io.refuse(decided.error.status, decided.error.message, dict(decided.error.headers))
        return False

    def _override(self, host: str, port: int) -> ResolveOverride | None:
        for override in self.config().resolve:
            if normalize_host(override.host) == normalize_host(host) and override.port in (None, port):
                return override
        return None

    async def _tunnel_resolver(self, host: str, port: int) -> list[str]:
        override = self._override(host, port)
        if override is not None:
            return [override.address]
        resolver = tunnel_policy.system_resolver(ipv4_only=self.config().disable_ipv6)
        return list(await resolver(host, port))


def address_of(client: str) -> str:
    """The address part of a ``host:port`` client string (``[::1]:5000`` -> ``::1``)."""
    if client.startswith("["):
        return client[1:].partition("]")[0]
    return client.rpartition(":")[0] or client
