"""The network floor: which source addresses may open a connection at all, decided at accept time.

With no client authentication the appliance serves whoever reaches it, so by default only sources
that cannot be on the public internet get in: loopback, RFC 1918, carrier-grade NAT (100.64/10),
IPv6 unique-local (fc00::/7) and link-local.  ``allow_clients`` replaces that list.  An IPv4 client
on a dual-stack (``::``) listener shows up as ``::ffff:a.b.c.d`` and is judged as ``a.b.c.d``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

PRIVATE_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(text)
    for text in (
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # RFC 6598 carrier-grade NAT (Tailscale and friends live here)
        "169.254.0.0/16",  # link-local
        "::1/128",  # loopback
        "fc00::/7",  # unique-local
        "fe80::/10",  # link-local
    )
)

# The front door checks every CONNECT's, absolute-form and mirror request's identity (407/401
# without one: front/identity.py), so ``access.enabled`` may open the floor (see ``client_floor``).
IDENTITY_ENFORCED = True


def parse_address(text: str) -> Address | None:
    """A peer address as the socket reports it (``fe80::1%eth0`` and ``::ffff:1.2.3.4`` included)."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class ClientFloor:
    """The source networks allowed to connect; everything else is closed before a byte is read."""

    networks: tuple[Network, ...] = PRIVATE_NETWORKS

    def allows(self, source: str) -> bool:
        """True when ``source`` (an IP address as text) is inside one of the networks.

        Not an IP address (a Unix socket peer, ``-``): allowed, as only a local process can be one.
        """
        address = parse_address(source)
        if address is None:
            return source in ("", "-")
        return any(address.version == net.version and address in net for net in self.networks)

    def covers_everyone(self) -> bool:
        return any(net.prefixlen == 0 for net in self.networks)


def floor_for(allow_clients: tuple[Network, ...] | None, client_auth: bool) -> ClientFloor:
    """The floor for a configuration: ``allow_clients`` when set, else private sources only unless
    every request must carry an identity (then the floor is open and identity decides)."""
    if allow_clients is not None:
        return ClientFloor(allow_clients)
    if client_auth:
        return ClientFloor((ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")))
    return ClientFloor()


def beyond_loopback(listen_host: str) -> bool:
    """True when a listener on ``listen_host`` can be reached from other machines."""
    if listen_host == "localhost":
        return False
    address = parse_address(listen_host)
    return address is None or not address.is_loopback


def exposure_warning(listen_hosts: tuple[str, ...], floor: ClientFloor, client_auth: bool) -> str | None:
    """The start-up warning for an appliance others can reach without proving who they are."""
    exposed = [host or "*" for host in listen_hosts if beyond_loopback(host)]
    if client_auth or not exposed:
        return None
    allowed = ", ".join(str(net) for net in floor.networks)
    return (
        f"listening on {', '.join(exposed)} WITHOUT client authentication: anyone who can reach the "
        f"port can pull everything the appliance holds, including images from private registries; "
        f"connections are accepted only from {allowed} (allow_clients)"
    )


def client_floor(allow_clients: tuple[Network, ...] | None, access_enabled: bool) -> ClientFloor:
    """The floor the engine runs with: with client authentication on, every request needs an
    identity (the front door refuses it otherwise), so the default floor opens to anyone;
    ``allow_clients`` still narrows it."""
    return floor_for(allow_clients, client_auth=access_enabled and IDENTITY_ENFORCED)
