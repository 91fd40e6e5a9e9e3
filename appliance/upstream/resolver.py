"""Name resolution for upstream connections: ``--resolve`` overrides and ``DISABLE_IPV6``.

An override ``HOST[:PORT]=ADDR:PORT`` makes connections to HOST go to ADDR:PORT while everything
above TCP (SNI, certificate verification, the ``Host`` header) keeps saying HOST: aiohttp asks the
resolver for addresses and connects to the host *and port* it gets back, but names the TLS peer
after the URL.  That is how tests and lab setups reach a registry under a made-up name.

A ``guard`` sees every address list the system resolver returns before aiohttp dials it, and may
raise (an ``OSError``) to refuse the connection: the redirect policy is checked on the very
addresses that are connected to (see ``redirect_policy``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from appliance.config.model import ResolveOverride

Guard = Callable[[str, int, list[str]], None]
"""``(host, port, addresses)``; raises ``OSError`` to refuse connecting to them."""


def find_override(overrides: Iterable[ResolveOverride], host: str, port: int) -> ResolveOverride | None:
    """The override for ``host:port``; one naming the port wins over a port-less one."""
    host = host.lower().rstrip(".")
    portless: ResolveOverride | None = None
    for override in overrides:
        if override.host.lower().rstrip(".") != host:
            continue
        if override.port == port:
            return override
        if override.port is None and portless is None:
            portless = override
    return portless


class OverrideResolver(AbstractResolver):
    """Answers overridden names itself and asks the system resolver for the rest.

    With ``ipv4_only`` every lookup is restricted to IPv4 (the seed's ``DISABLE_IPV6``); otherwise
    both families come back and aiohttp races them (happy eyeballs).
    """

    def __init__(
        self,
        overrides: Iterable[ResolveOverride] = (),
        *,
        ipv4_only: bool = False,
        fallback: AbstractResolver | None = None,
        guard: Guard | None = None,
    ) -> None:
        self._overrides = tuple(overrides)
        self._ipv4_only = ipv4_only
        self._fallback = fallback
        self._guard = guard

    def update(self, overrides: Iterable[ResolveOverride], *, ipv4_only: bool) -> None:
        """Hot reload: new overrides apply to the next connection (the caller clears DNS caches)."""
        self._overrides = tuple(overrides)
        self._ipv4_only = ipv4_only

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        override = find_override(self._overrides, host, port)
        if override is not None:
            address = ipaddress.ip_address(override.address.strip("[]"))
            addr_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if self._ipv4_only and addr_family == socket.AF_INET6:
                raise OSError(f"--resolve sends {host} to an IPv6 address, but IPv6 is disabled")
            return [
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=override.address_port,
                    family=addr_family,
                    proto=socket.IPPROTO_TCP,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        if self._ipv4_only:
            family = socket.AF_INET
        if self._fallback is None:
            # Created lazily: the default resolver binds to the running loop.
            self._fallback = DefaultResolver()
        results = await self._fallback.resolve(host, port, family)
        if self._guard is not None:
            self._guard(host, port, [result["host"] for result in results])
        return results

    async def close(self) -> None:
        if self._fallback is not None:
            await self._fallback.close()
