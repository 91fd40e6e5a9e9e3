"""Whether a CONNECT to a host the appliance does not intercept may be tunnelled, and to which address.

The seed was an open forward proxy: any host, any port.  An appliance that clients reach over the
network must not be a gateway to what only the appliance can reach (SSRF), so the decision is made on
the addresses a name *resolves to*, and the tunnel connects to exactly those addresses (no second DNS
lookup, so a name cannot be re-pointed between the check and the connect: no DNS rebinding).

Rules by ``TunnelMode`` (every mode refuses a resolution that contains any refused address):

======== ============ ===================================================================
mode     ports        addresses allowed
======== ============ ===================================================================
default  443 only     public and private (RFC 1918, ULA); never loopback, link-local (cloud
                      metadata 169.254.169.254, fe80::/10), the cloud metadata addresses that
                      are not link-local (``METADATA_ADDRESSES``), unspecified (0.0.0.0 reaches
                      localhost), multicast/broadcast/reserved, or the appliance's own addresses
all      any          as ``default`` plus loopback (the seed's open behaviour, for labs and
                      tests), except the appliance's own listening ports on loopback, so a
                      client cannot loop the proxy into itself; link-local and the metadata
                      addresses stay refused: no registry lives at a metadata address
list     as listed    only ``host``, ``host:port``, ``*.suffix[:port]`` entries (a bare host
                      means port 443; ``*.example.com`` matches every sub-domain, not the apex);
                      addresses as ``default``
none     -            nothing: only intercepted registries are served
======== ============ ===================================================================

Everything here is pure except ``check_tunnel`` (awaits the injected resolver) and
``own_interface_addresses`` (reads ``/proc`` once at start).  The address classes, host-name checks,
allow-list matching and the system resolver are ``upstream.addresses``: the redirect policy decides on
the same classes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from appliance.config.model import TunnelMode, TunnelPolicy
from appliance.upstream.addresses import (
    AddressClass,
    IPAddress,
    classify,
    list_matches,
    normalize_tunnel_host,
    own_set,
    parse_address,
    resolve_system,
)

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses`` as strings; raises ``OSError`` when the name does not resolve."""

_ALLOWED_CLASSES: dict[TunnelMode, frozenset[AddressClass]] = {
    TunnelMode.DEFAULT: frozenset({AddressClass.PUBLIC, AddressClass.PRIVATE}),
    TunnelMode.LIST: frozenset({AddressClass.PUBLIC, AddressClass.PRIVATE}),
    TunnelMode.ALL: frozenset({AddressClass.PUBLIC, AddressClass.PRIVATE, AddressClass.LOOPBACK}),
    TunnelMode.NONE: frozenset(),
}


class Verdict(StrEnum):
    ALLOWED = "allowed"
    REFUSED = "refused"  # by policy: answer 403
    UNRESOLVABLE = "unresolvable"  # the name did not resolve: answer 502


@dataclass(frozen=True, slots=True)
class TunnelDecision:
    """The answer for one CONNECT.  ``addresses`` (allowed only) are the checked addresses to dial."""

    verdict: Verdict
    reason: str  # one line, safe to show the client
    host: str
    port: int
    addresses: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOWED

    @property
    def http_status(self) -> int:
        """The status the front door answers a refusal with (200 when allowed)."""
        return {Verdict.ALLOWED: 200, Verdict.REFUSED: 403, Verdict.UNRESOLVABLE: 502}[self.verdict]


def check_target(policy: TunnelPolicy, host: str, port: int) -> TunnelDecision | None:
    """The refusal decided by name and port alone, before any resolving (None: go on and resolve)."""
    mode = policy.mode
    if not 1 <= port <= 65535:
        return _refuse(host, port, f"invalid port {port}")
    if mode is TunnelMode.NONE:
        return _refuse(host, port, 'tunnelling is disabled (tunnel = "none"): only intercepted registries')
    if mode is TunnelMode.DEFAULT and port != 443:
        return _refuse(
            host, port, f"port {port} refused: by default only port 443 is tunnelled (see the tunnel setting)"
        )
    if mode is TunnelMode.LIST and not list_matches(policy.hosts, host, port):
        return _refuse(host, port, f"{_target(host, port)} is not on the tunnel allow-list")
    return None


def check_addresses(
    policy: TunnelPolicy,
    host: str,
    port: int,
    addresses: Sequence[str],
    *,
    own_addresses: Collection[str],
    own_ports: Collection[int] = (),
) -> TunnelDecision:
    """The decision for resolved ``addresses``: all of them must be allowed."""
    allowed = _ALLOWED_CLASSES[policy.mode]
    own = own_set(own_addresses)
    checked: list[str] = []
    for text in addresses:
        address = parse_address(text)
        if address is None:
            return _refuse(host, port, f"{host} resolved to something that is not an IP address")
        klass = classify(address, own)
        if klass not in allowed:
            return _refuse(host, port, _address_reason(host, address, klass))
        if klass is AddressClass.LOOPBACK and port in own_ports:
            return _refuse(host, port, f"{_target(host, port)} is the appliance itself")
        if str(address) not in checked:
            checked.append(str(address))
    if not checked:
        return TunnelDecision(Verdict.UNRESOLVABLE, f"{host} has no addresses", host, port)
    return TunnelDecision(Verdict.ALLOWED, "allowed", host, port, tuple(checked))


async def check_tunnel(
    policy: TunnelPolicy,
    host: str,
    port: int,
    *,
    own_addresses: Collection[str],
    resolve: Resolver | None = None,
    own_ports: Collection[int] = (),
    resolve_timeout: float = 10.0,
) -> TunnelDecision:
    """Decide a CONNECT to ``host:port`` (not an intercepted registry).

    ``own_addresses``: the listen address and ``own_interface_addresses()``.  ``own_ports``: the
    appliance's listening ports, refused on loopback even in ``all`` mode (a proxy loop otherwise).
    ``resolve`` defaults to ``resolve_system``; an IP literal is never resolved.
    """
    name = normalize_tunnel_host(host)
    if name is None:
        return _refuse(host[:100], port, "not a valid host name or IP address")
    early = check_target(policy, name, port)
    if early is not None:
        return early
    if parse_address(name) is not None:
        addresses: Sequence[str] = (name,)
    else:
        try:
            async with asyncio.timeout(resolve_timeout):
                addresses = await (resolve or resolve_system)(name, port)
        except TimeoutError:
            return TunnelDecision(Verdict.UNRESOLVABLE, f"resolving {name} timed out", name, port)
        except OSError as exc:
            detail = exc.strerror or str(exc) or type(exc).__name__
            return TunnelDecision(Verdict.UNRESOLVABLE, f"cannot resolve {name}: {detail}", name, port)
    return check_addresses(policy, name, port, addresses, own_addresses=own_addresses, own_ports=own_ports)


def system_resolver(*, ipv4_only: bool = False) -> Resolver:
    """``resolve_system`` bound to IPv4 only when the config says ``disable_ipv6``."""
    family = socket.AF_INET if ipv4_only else socket.AF_UNSPEC

    async def resolve(host: str, port: int) -> list[str]:
        return await resolve_system(host, port, family=family)

    return resolve


def own_interface_addresses(proc: Path = Path("/proc/net")) -> set[str]:
    """Every address of this host's interfaces, loopback included (blocking: call once at start).

    Linux: IPv4 from ``fib_trie`` (its ``/32 host LOCAL`` entries), IPv6 from ``if_inet6``.  Other
    systems, or a missing ``/proc``: what the host name resolves to.
    """
    found: set[str] = set()
    try:
        found |= _ipv4_from_fib_trie((proc / "fib_trie").read_text())
    except OSError:
        pass
    try:
        found |= _ipv6_from_if_inet6((proc / "if_inet6").read_text())
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM):
            found.add(str(info[4][0]))
    except OSError:
        pass
    return {str(a) for a in (parse_address(x) for x in found) if a is not None}


def _ipv4_from_fib_trie(text: str) -> set[str]:
    found: set[str] = set()
    last_leaf: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last_leaf = stripped[3:].strip()
        elif stripped == "/32 host LOCAL" and last_leaf is not None:
            found.add(last_leaf)
    return found


def _ipv6_from_if_inet6(text: str) -> set[str]:
    found: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            hex_address = fields[0]
            found.add(str(ipaddress.IPv6Address(int(hex_address, 16))))
    return found


def _refuse(host: str, port: int, reason: str) -> TunnelDecision:
    return TunnelDecision(Verdict.REFUSED, reason, host, port)


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address_reason(host: str, address: IPAddress, klass: AddressClass) -> str:
    shown = host if str(address) == host else f"{host} ({address})"
    return f"tunnel to {shown} refused: {klass.value} address"
