"""What kind of address a connection would reach: the address classes both policies on where the
appliance may connect for a client decide on, the CONNECT tunnel (``front.tunnel_policy``) and upstream
redirect hops (``upstream.redirect_policy``), plus host-name checks, allow-list matching and the system
resolver they share.

Everything here is pure except ``resolve_system`` (the loop's ``getaddrinfo``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Collection, Iterable
from enum import StrEnum

from appliance.config.model import split_host_port

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # connect() to 0.x reaches this host on Linux
# Cloud instance-metadata services outside link-local space, so ``is_link_local`` misses them:
# Alibaba Cloud (in 100.64/10, carrier-grade NAT: "private"), AWS's IPv6 IMDS (a ULA, "private") and
# Azure's WireServer (a public address).  They hand out credentials to whoever asks from the
# instance, so no mode, ``tunnel = "all"`` included, ever reaches them.
METADATA_ADDRESSES: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset(
    {
        ipaddress.IPv4Address("100.100.100.200"),
        ipaddress.IPv6Address("fd00:ec2::254"),
        ipaddress.IPv4Address("168.63.129.16"),
    }
)


class AddressClass(StrEnum):
    """What kind of address a connection would reach, most specific first."""

    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    OWN = "the appliance's own"
    LINK_LOCAL = "link-local"
    METADATA = "cloud metadata"
    MULTICAST = "multicast"
    RESERVED = "reserved"
    PRIVATE = "private"
    PUBLIC = "public"


def parse_address(value: str) -> IPAddress | None:
    """An IP literal (brackets, IPv4-mapped IPv6 unwrapped) or None for anything else."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def own_set(own_addresses: Iterable[str]) -> frozenset[IPAddress]:
    """The IP addresses among ``own_addresses``, without IPv6 scope ids, for ``classify``."""
    parsed = (parse_address(a) for a in own_addresses)
    return frozenset(_without_scope(a) for a in parsed if a is not None)


def _without_scope(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def classify_address(address: str | IPAddress, own_addresses: Collection[str] = ()) -> AddressClass:
    """The class deciding whether a tunnel may reach ``address``.  Non-IP text counts as reserved."""
    parsed = parse_address(address) if isinstance(address, str) else parse_address(str(address))
    if parsed is None:
        return AddressClass.RESERVED
    return classify(parsed, own_set(own_addresses))


def classify(address: IPAddress, own: frozenset[IPAddress]) -> AddressClass:
    """``classify_address`` for a parsed address and an ``own_set``."""
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK):
        return AddressClass.UNSPECIFIED
    if address.is_loopback:
        return AddressClass.LOOPBACK
    if _without_scope(address) in own:
        return AddressClass.OWN
    if address.is_link_local:
        return AddressClass.LINK_LOCAL
    if _without_scope(address) in METADATA_ADDRESSES:
        return AddressClass.METADATA
    if address.is_multicast:
        return AddressClass.MULTICAST
    if address.is_reserved or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local):
        return AddressClass.RESERVED
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address("255.255.255.255"):
        return AddressClass.RESERVED
    if address.is_global:
        return AddressClass.PUBLIC
    # RFC 1918, ULA, carrier-grade NAT, benchmarking nets: reachable, just not on the internet.
    return AddressClass.PRIVATE


def normalize_tunnel_host(host: str) -> str | None:
    """Lower-case host name or canonical IP literal, or None when ``host`` is neither."""
    value = host.strip().lower().rstrip(".")
    address = parse_address(value)
    if address is not None:
        return str(address)
    if not value or len(value) > 253 or not _HOST_NAME.match(value):
        return None
    return value


def list_matches(entries: Iterable[str], host: str, port: int) -> bool:
    """Whether ``host:port`` is on the allow-list (``host`` already normalized)."""
    for entry in entries:
        try:
            entry_host, entry_port = split_host_port(entry.strip())
        except ValueError:
            continue  # a bad port in one entry must not break the others
        if (entry_port if entry_port is not None else 443) != port:
            continue
        wanted = entry_host.lower().rstrip(".")
        if wanted.startswith("*."):
            if host.endswith(wanted[1:]):
                return True
            continue
        if normalize_tunnel_host(wanted) == host:
            return True
    return False


async def resolve_system(host: str, port: int, *, family: int = socket.AF_UNSPEC) -> list[str]:
    """The system resolver (``getaddrinfo`` in the loop's executor), order kept, duplicates dropped."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen
