"""Leaf certificates for intercepted hosts: minted on demand from the CA and kept in a bounded store.

Leaves are minted per host when a client first connects, rather than once for a fixed list (the
seed's way), so a newly added registry needs no restart; they live in a bounded LRU store and are
renewed well before they expire.  Clients such as skopeo open a new tunnel and TLS handshake per
request, so the store is what keeps handshakes cheap.

Key generation blocks, so ``LeafCertificates.server_context_async`` mints in an executor on a miss.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import ssl
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.front.ca import BACKDATE, CN_MAX, CaKey, new_key, utcnow

Clock = Callable[[], datetime.datetime]


class LeafIssuer(Protocol):
    """What signs leaves: the name-constrained intermediate, or a CA that cannot delegate to one."""

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def key(self) -> CaKey: ...

    @property
    def not_after(self) -> datetime.datetime: ...

    def chain_pem(self) -> bytes:
        """The issuer and its own issuers, as sent after a leaf."""
        ...


_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_DNS_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def normalize_leaf_host(host: str) -> str:
    """The name a leaf is minted for: lower-case, no trailing dot, IPs in canonical form.

    Raises ``ValueError`` for something that is neither a DNS name nor an IP literal.
    """
    value = host.strip().lower().rstrip(".")
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if len(value) > 253 or not _DNS_NAME.match(value):
        raise ValueError(f"not a host name or IP address: {host[:100]!r}")
    return value


@dataclass(frozen=True, slots=True)
class _Leaf:
    context: ssl.SSLContext
    certificate: x509.Certificate
    renew_at: datetime.datetime


class LeafCertificates:
    """Server-side TLS contexts for intercepted hosts, minted on demand and kept in a bounded LRU.

    ``minted`` counts certificates made, ``hits`` counts contexts served from the store (including
    callers that joined a mint already in flight for the same host).
    """

    def __init__(
        self,
        ca: LeafIssuer,
        *,
        max_entries: int = 1024,
        lifetime: datetime.timedelta = datetime.timedelta(days=30),
        renew_before: datetime.timedelta = datetime.timedelta(days=7),
        clock: Clock = utcnow,
        configure: Callable[[ssl.SSLContext], None] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not datetime.timedelta(0) <= renew_before < lifetime:
            raise ValueError("renew_before must be shorter than lifetime, or every use would re-mint")
        self.ca = ca
        self.max_entries = max_entries
        self.lifetime = lifetime
        self.renew_before = renew_before
        self.minted = 0
        self.hits = 0
        # Applied to every context minted (the TLS listener asks for client certificates this way).
        self.configure = configure
        self._clock = clock
        self._leaves: OrderedDict[str, _Leaf] = OrderedDict()
        # Mints run in executor threads while the loop thread reads the store.
        self._lock = threading.Lock()
        self._in_flight: dict[str, asyncio.Future[ssl.SSLContext]] = {}

    def __len__(self) -> int:
        return len(self._leaves)

    def server_context(self, host: str) -> ssl.SSLContext:
        """The context for ``host``, minting its certificate if needed (blocking on a miss)."""
        name = normalize_leaf_host(host)
        cached = self._cached(name)
        return cached if cached is not None else self._mint(name)

    async def server_context_async(self, host: str) -> ssl.SSLContext:
        """Like ``server_context``, but a miss mints in an executor, once per host however many wait."""
        name = normalize_leaf_host(host)
        cached = self._cached(name)
        if cached is not None:
            return cached
        pending = self._in_flight.get(name)
        if pending is not None:
            with self._lock:
                self.hits += 1
            # Shielded: one waiter giving up must not cancel the mint the others wait for.
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().run_in_executor(None, self._mint, name)
        self._in_flight[name] = future
        future.add_done_callback(lambda _f: self._in_flight.pop(name, None))
        return await asyncio.shield(future)

    def certificate(self, host: str) -> x509.Certificate | None:
        """The stored leaf for ``host``, if any (for diagnostics; does not count as a hit)."""
        with self._lock:
            leaf = self._leaves.get(normalize_leaf_host(host))
        return leaf.certificate if leaf is not None else None

    def sni_server_context(self, default_name: str) -> ssl.SSLContext:
        """A server context that presents, per handshake, the leaf for the name the client asked.

        A context of its own (the leaf contexts are shared with the MITM tunnels); a client that
        sends no name, or one that is not a host name, gets the leaf for ``default_name``, which
        is minted now so that a bad name fails at start.
        """
        self.server_context(default_name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

        def by_name(sslobj: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
            try:
                sslobj.context = self.server_context(name or default_name)
            except ValueError:  # not a host name: the listen address's certificate
                sslobj.context = self.server_context(default_name)

        context.sni_callback = by_name
        if self.configure is not None:
            self.configure(context)
        return context

    def _cached(self, name: str) -> ssl.SSLContext | None:
        with self._lock:
            leaf = self._leaves.get(name)
            if leaf is None or self._clock() >= leaf.renew_at:
                return None
            self._leaves.move_to_end(name)
            self.hits += 1
            return leaf.context

    def _mint(self, name: str) -> ssl.SSLContext:
        now = self._clock()
        cert, key_pem = mint_leaf(self.ca, name, now=now, lifetime=self.lifetime)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        context = server_context_from_pem(cert_pem + self.ca.chain_pem(), key_pem)
        context.sni_callback = remember_sni
        if self.configure is not None:
            self.configure(context)
        not_after = cert.not_valid_after_utc
        renew_at = not_after - self.renew_before
        if renew_at <= now:
            # Cut short by a CA about to expire: a new leaf could not last longer, so don't re-mint
            # on every handshake.
            renew_at = not_after
        leaf = _Leaf(context, cert, renew_at=renew_at)
        with self._lock:
            self.minted += 1
            self._leaves[name] = leaf
            self._leaves.move_to_end(name)
            while len(self._leaves) > self.max_entries:
                self._leaves.popitem(last=False)
        return context


SNI_ATTRIBUTE = "appliance_sni"


def remember_sni(sslobj: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
    """Keep the server name a client sent on its connection (``SNI_ATTRIBUTE``).

    Python offers no other way to read it on the server side; the front door compares it with the
    CONNECT authority of an intercepted tunnel.
    """
    setattr(sslobj, SNI_ATTRIBUTE, name)


def mint_leaf(
    ca: LeafIssuer, name: str, *, now: datetime.datetime, lifetime: datetime.timedelta
) -> tuple[x509.Certificate, bytes]:
    """A leaf certificate for one host (DNS or IP SAN) signed by ``ca``, and its key as PEM."""
    key = new_key()
    cert = build_leaf(ca.certificate, ca.key, (name,), key=key, now=now, lifetime=lifetime)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert, key_pem


def build_leaf(
    issuer: x509.Certificate,
    issuer_key: CaKey,
    names: Sequence[str],
    *,
    key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    lifetime: datetime.timedelta,
) -> x509.Certificate:
    """A server certificate for ``names`` (DNS names or IP literals, as SANs) signed by ``issuer``."""
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    dns_names = [n for n in names if not _is_ip(n)]
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "registry-appliance")]
    # No CN for an IP-only leaf: OpenSSL checks a CN that looks like a host name against the DNS
    # name constraints when the leaf has no DNS SAN, and "127.0.0.1" looks like one.
    if dns_names:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0][:CN_MAX]))
    # A leaf must not outlive its issuer, or clients reject it with a confusing error.
    not_after = min(now + lifetime, issuer.not_valid_after_utc)
    issuer_public = issuer_key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def server_context_from_pem(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS server context from PEM text.

    ``ssl`` loads keys only from files, so the key goes through an anonymous in-memory file
    (``memfd``, Linux) or, where that is unavailable, a private 0700 directory removed at once.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The front door speaks HTTP/1.1 only; saying so stops clients from trying h2 first.
    context.set_alpn_protocols(["http/1.1"])
    bundle = key_pem + chain_pem
    try:
        _load_via_memfd(context, bundle)
    except (AttributeError, OSError):
        _load_via_private_dir(context, bundle)
    return context


def _load_via_memfd(context: ssl.SSLContext, bundle: bytes) -> None:
    fd = os.memfd_create("leaf", os.MFD_CLOEXEC)
    try:
        os.write(fd, bundle)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _load_via_private_dir(context: ssl.SSLContext, bundle: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="appliance-leaf-") as directory:
        path = Path(directory) / "leaf.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(bundle)
        context.load_cert_chain(path)
