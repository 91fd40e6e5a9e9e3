"""The name-constrained intermediate that interception leaves chain to, instead of the root.

Clients trust the root (``ca.crt``, served at ``/ca.crt``).  Trusting a CA that signs leaves for any
host would let the appliance vouch for every site; so the root signs one intermediate carrying X.509
name constraints (RFC 5280 4.2.1.10) limited to the names the engine intercepts — every registry's
host, aliases and token-realm hosts — and the intermediate signs the leaves.  Go (skopeo, podman,
containerd) and OpenSSL (curl) reject a leaf outside those names even though it chains to the root.

- **DNS names** are permitted subtrees: ``registry.example`` permits that name and its subdomains
  (RFC 5280 has no exact-name form).  Names under another permitted name are dropped as redundant.
- **IP addresses**: a configured IP registry is permitted as a ``/32`` (``/128``); every other range
  of its family is excluded, and a family with no IP registry is excluded whole, so an IP SAN cannot
  slip past the DNS-only constraints (unconstrained name forms are otherwise allowed).

The intermediate lives in memory only and is re-issued at every start (as the seed did): its key is
never written anywhere, and clients pin only the root, so a new intermediate costs them nothing.  A
hot reload that changes the set of intercepted names re-issues it at once (adding *or* removing a
registry: a removed registry is no longer vouched for), and the leaf store starts empty, since its
leaves name the old intermediate.  Open tunnels keep the handshake they made.

A root that may not sign CAs (``pathlen:0``: roots created by earlier versions of the appliance)
cannot delegate: its leaves are signed by the root itself, unconstrained, with a start-up warning.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.config.model import Config, split_host_port
from appliance.front.ca import (
    APPLIANCE_ORGANIZATION,
    BACKDATE,
    CaKey,
    CertificateAuthority,
    ca_key_usage,
    delegation_warnings,
    may_delegate,
    new_key,
    utcnow,
)
from appliance.front.leaf_certs import Clock, LeafCertificates, LeafIssuer, normalize_leaf_host

if TYPE_CHECKING:
    import ssl

log = logging.getLogger("appliance.engine")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_ALL_IPV4 = ipaddress.IPv4Network("0.0.0.0/0")
_ALL_IPV6 = ipaddress.IPv6Network("::/0")


@dataclass(frozen=True, slots=True)
class RegistryNames:
    """The names the intermediate may vouch for: DNS subtrees and single IP addresses."""

    dns: tuple[str, ...]
    ips: tuple[IpAddress, ...] = ()

    @classmethod
    def of(cls, hosts: Iterable[str]) -> RegistryNames:
        """From host names or IP literals (normalised; ports already removed)."""
        dns: set[str] = set()
        ips: set[IpAddress] = set()
        for host in hosts:
            try:
                name = normalize_leaf_host(host)
            except ValueError:
                continue  # not a name a leaf could be minted for, so nothing to permit
            try:
                ips.add(ipaddress.ip_address(name))
            except ValueError:
                dns.add(name)
        # Shortest first, so a subdomain of a name already kept is recognised as covered.
        kept: list[str] = []
        for name in sorted(dns, key=lambda n: (n.count("."), n)):
            if not any(_within(name, parent) for parent in kept):
                kept.append(name)
        return cls(dns=tuple(sorted(kept)), ips=tuple(sorted(ips, key=lambda a: (a.version, int(a)))))

    def covers(self, host: str) -> bool:
        """Whether a leaf for ``host`` satisfies these constraints."""
        name = normalize_leaf_host(host)
        try:
            return ipaddress.ip_address(name) in self.ips
        except ValueError:
            return any(_within(name, permitted) for permitted in self.dns)

    def __str__(self) -> str:
        return " ".join([*self.dns, *(str(ip) for ip in self.ips)])


def _within(name: str, subtree: str) -> bool:
    return name == subtree or name.endswith("." + subtree)


def intercepted_names(config: Config) -> RegistryNames:
    """Every name the engine intercepts: each registry's host, aliases and token-realm hosts."""
    hosts = (
        split_host_port(name)[0]
        for registry in config.registries
        for name in (*registry.names(), *registry.auth_hosts)
    )
    return RegistryNames.of(hosts)


def name_constraints(names: RegistryNames) -> x509.NameConstraints:
    permitted: list[x509.GeneralName] = [x509.DNSName(n) for n in names.dns]
    permitted += [x509.IPAddress(ipaddress.ip_network(ip)) for ip in names.ips]
    excluded: list[x509.GeneralName] = []
    for everything in (_ALL_IPV4, _ALL_IPV6):
        own = [ipaddress.ip_network(ip) for ip in names.ips if ip.version == everything.version]
        excluded += [x509.IPAddress(net) for net in _complement(everything, own)]
    return x509.NameConstraints(permitted_subtrees=permitted or None, excluded_subtrees=excluded or None)


def _complement(everything: IpNetwork, own: list[IpNetwork]) -> list[IpNetwork]:
    """``everything`` minus the ``own`` networks (all of one family), in address order."""
    remaining: list[Any] = [everything]  # one family, which the stubs cannot express
    for net in own:
        rest: list[Any] = []
        for block in remaining:
            rest.extend(block.address_exclude(net) if net.subnet_of(block) else [block])
        remaining = rest
    return sorted(remaining, key=lambda n: int(n.network_address))


@dataclass(frozen=True, slots=True)
class Intermediate:
    """A constrained intermediate CA signed by the root (a ``LeafIssuer``); in memory only."""

    certificate: x509.Certificate
    key: CaKey
    root: CertificateAuthority
    names: RegistryNames

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    def chain_pem(self) -> bytes:
        """The intermediate, then the root and its own issuers: what follows every leaf."""
        return self.certificate.public_bytes(serialization.Encoding.PEM) + self.root.chain_pem()


def issue_intermediate(
    root: CertificateAuthority, names: RegistryNames, *, now: datetime.datetime | None = None
) -> Intermediate:
    """A new intermediate for ``names``, valid as long as the root (pure: writes nothing)."""
    current = now or utcnow()
    key = new_key()
    root_public = root.key.public_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, APPLIANCE_ORGANIZATION),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"registry-appliance registries {current:%Y-%m-%d %H:%M:%S}"
            ),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(current - BACKDATE, root.certificate.not_valid_before_utc))
        .not_valid_after(root.not_after)
        # pathlen 0: it signs leaves only.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        # Only server certificates: Go and OpenSSL check that a leaf's purposes nest in this.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(name_constraints(names), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_public), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    return Intermediate(certificate=cert, key=key, root=root, names=names)


def can_delegate(root: CertificateAuthority) -> bool:
    """Whether the root may sign an intermediate CA (its ``pathLenConstraint`` is not 0)."""
    return may_delegate(root.certificate)


def root_warnings(root: CertificateAuthority) -> list[str]:
    """Start-up warnings about what the root itself vouches for (empty for the appliance's own)."""
    return delegation_warnings(root.certificate, root.cert_path)


class InterceptionCertificates:
    """Leaves for intercepted hosts, from an intermediate constrained to ``names``.

    ``reconfigure`` re-issues the intermediate when the names change; ``issued`` counts
    intermediates made (1 after start).
    """

    def __init__(self, root: CertificateAuthority, names: RegistryNames, *, clock: Clock = utcnow) -> None:
        self.root = root
        self.constrained = can_delegate(root)
        self.issued = 0
        self._clock = clock
        self.names = names
        self.issuer: LeafIssuer = root
        self.leaves = self._issue(names)
        if self.constrained:
            log.info("intercepted hosts get certificates from an intermediate limited to: %s", names)

    def _issue(self, names: RegistryNames) -> LeafCertificates:
        if self.constrained:
            self.issuer = issue_intermediate(self.root, names, now=self._clock())
            self.issued += 1
        return LeafCertificates(self.issuer, clock=self._clock)

    def reconfigure(self, names: RegistryNames) -> bool:
        """Apply a hot reload's names: re-issue the intermediate if they changed (True if so)."""
        if names == self.names or not self.constrained:
            self.names = names
            return False
        # On the loop thread, between two handshakes: the next one mints from the new intermediate.
        # Mints already running in an executor finish into the old store, which is dropped.
        self.leaves = self._issue(names)
        self.names = names
        log.info("interception certificates now chain to a new intermediate limited to: %s", names)
        return True

    async def server_context_async(self, host: str) -> ssl.SSLContext:
        return await self.leaves.server_context_async(host)

    def server_context(self, host: str) -> ssl.SSLContext:
        return self.leaves.server_context(host)

    def certificate(self, host: str) -> x509.Certificate | None:
        return self.leaves.certificate(host)

    @property
    def minted(self) -> int:
        """Leaves minted since the intermediate was last issued."""
        return self.leaves.minted

    @property
    def hits(self) -> int:
        return self.leaves.hits
