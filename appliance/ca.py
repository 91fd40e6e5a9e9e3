"""The appliance's certificate authority and the leaf certificates it mints for intercepted hosts.

Clients trust one CA (``ca.crt``, served at ``/ca.crt``).  The CA is created on first start and
reused across restarts, or it is the user's own (``CA_CRT_FILE``/``CA_KEY_FILE``).  Leaf
certificates are minted per host on demand rather than once for a fixed list (the seed's way), so a
newly added registry needs no restart; they live in a bounded LRU store and are renewed well before
they expire.  Clients such as skopeo open a new tunnel and TLS handshake per request, so the store
is what keeps handshakes cheap.

Blocking work (key generation, file I/O) runs in an executor: ``load_or_create`` once at start,
``LeafCertificates.server_context_async`` per cache miss.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import socket
import ssl
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.errors import ConfigError

if TYPE_CHECKING:
    from appliance.config import Config

CaKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
Clock = Callable[[], datetime.datetime]

CA_LIFETIME = datetime.timedelta(days=3650)
EXPIRY_WARNING_DAYS = 30
# The seed's create_ca_cert.sh encrypted its CA key with this; users bringing that CA along must
# not have to re-encode the key.  It is a well-known value, not a secret.
SEED_CA_PASSPHRASE = b"foobar"
# Certificates are backdated so a client whose clock is a little behind still accepts them.
_BACKDATE = datetime.timedelta(days=1)
_CN_MAX = 64  # ub-common-name (RFC 5280)
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_DNS_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class CertificateAuthority:
    """A loaded CA: certificate plus private key.  Build it with ``load_or_create`` or ``load``."""

    def __init__(
        self,
        cert: x509.Certificate,
        key: CaKey,
        *,
        cert_path: Path,
        key_path: Path,
        extra_chain: tuple[x509.Certificate, ...] = (),
    ) -> None:
        self.certificate = cert
        self.key = key
        self.cert_path = cert_path
        self.key_path = key_path
        # A user CA file may carry its own issuers after the CA; they go out with every leaf.
        self.extra_chain = extra_chain
        self.cert_pem: bytes = cert.public_bytes(serialization.Encoding.PEM)

    def __repr__(self) -> str:
        return f"CertificateAuthority(subject={self.subject!r}, fingerprint={self.fingerprint_sha256})"

    @classmethod
    def load_or_create(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """Load the CA at these paths, or create one when neither file exists (blocking)."""
        cert_exists, key_exists = cert_path.exists(), key_path.exists()
        if cert_exists and key_exists:
            return cls.load(cert_path, key_path)
        if cert_exists != key_exists:
            missing, present = (key_path, cert_path) if cert_exists else (cert_path, key_path)
            raise ConfigError(
                str(missing),
                f"missing, but {present} exists; provide both CA files, or remove {present} "
                "to have a new CA created",
            )
        try:
            return cls.create(cert_path, key_path)
        except OSError as exc:
            where = exc.filename or key_path
            raise ConfigError(str(where), f"cannot create the CA: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """Load an existing CA (PEM, RSA or EC; key unencrypted or seed-style ``foobar``)."""
        certs = load_certificates(cert_path)
        key = _load_private_key(key_path)
        if _spki(key.public_key()) != _spki(certs[0].public_key()):
            raise ConfigError(
                str(key_path), f"this private key does not belong to the certificate in {cert_path}"
            )
        _check_is_ca(certs[0], cert_path)
        return cls(certs[0], key, cert_path=cert_path, key_path=key_path, extra_chain=tuple(certs[1:]))

    @classmethod
    def create(
        cls, cert_path: Path, key_path: Path, *, lifetime: datetime.timedelta = CA_LIFETIME
    ) -> CertificateAuthority:
        """Create a new CA and write it: key 0600 (atomically, never readable by others), then cert."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _utcnow()
        host = socket.gethostname() or "localhost"  # no DNS lookup: that can hang for seconds
        common_name = f"registry-appliance CA {host} {now:%Y-%m-%d}"[:_CN_MAX]
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "registry-appliance"),
                x509.NameAttribute(
                    NameOID.ORGANIZATIONAL_UNIT_NAME, f"container registry cache on {host}"[:_CN_MAX]
                ),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + lifetime)
            # pathlen 0: this CA signs leaves only, so a stolen leaf key can never sign anything.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for directory in {cert_path.parent, key_path.parent}:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Key first: a crash between the two writes leaves a key without a cert, which load_or_create
        # reports instead of silently minting a CA that clients have never seen.
        _write_atomically(key_path, key_pem, mode=0o600)
        _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return cls(cert, key, cert_path=cert_path, key_path=key_path)

    @property
    def fingerprint_sha256(self) -> str:
        return fingerprint_sha256(self.certificate)

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    def days_left(self, now: datetime.datetime | None = None) -> int:
        """Whole days until the CA expires (negative once it has)."""
        return (self.not_after - (now or _utcnow())).days

    def chain_pem(self) -> bytes:
        """The CA and its own issuers, as sent after a leaf."""
        return self.cert_pem + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.extra_chain)


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Colon-separated upper-case hex, as ``openssl x509 -fingerprint -sha256`` prints it."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _spki(public: object) -> bytes:
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return b""  # never equal to a supported key's encoding
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """All PEM certificates in a file, the first being the one that matters (blocking)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read CA certificate: {exc.strerror or exc}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ConfigError(str(path), "not a PEM certificate (expected -----BEGIN CERTIFICATE-----)")
    return certs


def _load_private_key(path: Path) -> CaKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read CA key: {exc.strerror or exc}") from None
    key: object = None
    for password in (None, SEED_CA_PASSPHRASE):
        try:
            key = serialization.load_pem_private_key(data, password=password)
            break
        except TypeError:
            # Encrypted and no password given: try the seed's passphrase next.
            continue
        except ValueError:
            if password is None:
                raise ConfigError(str(path), "not a PEM private key") from None
            raise ConfigError(
                str(path), "the key is encrypted with an unknown passphrase; store it unencrypted"
            ) from None
        except UnsupportedAlgorithm:
            raise ConfigError(str(path), "unsupported private key algorithm") from None
    if key is None:
        raise ConfigError(str(path), "the key is encrypted with an unknown passphrase; store it unencrypted")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(str(path), f"unsupported CA key type {type(key).__name__}; use RSA or EC")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise ConfigError(str(path), f"RSA key of {key.key_size} bits is too weak; use at least 2048")
    return key


def _check_is_ca(cert: x509.Certificate, path: Path) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return  # an old v1 root: OpenSSL accepts it as a trust anchor
    if not constraints.ca:
        raise ConfigError(str(path), "this certificate is not a CA (basicConstraints CA:FALSE)")


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    # The temp file is created with its final mode, so the key is never readable by others, not even
    # for a moment; os.replace makes the file appear whole or not at all.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- leaf certificates --------------------------------------------------------------------------


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
        ca: CertificateAuthority,
        *,
        max_entries: int = 1024,
        lifetime: datetime.timedelta = datetime.timedelta(days=30),
        renew_before: datetime.timedelta = datetime.timedelta(days=7),
        clock: Clock = _utcnow,
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


def mint_leaf(
    ca: CertificateAuthority, name: str, *, now: datetime.datetime, lifetime: datetime.timedelta
) -> tuple[x509.Certificate, bytes]:
    """A leaf certificate for one host (DNS or IP SAN) signed by ``ca``, and its key as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        san = x509.DNSName(name)
    # A leaf must not outlive its issuer, or clients reject it with a confusing error.
    not_after = min(now + lifetime, ca.not_after)
    ca_public = ca.certificate.public_key()
    if not isinstance(ca_public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise TypeError("CA key type checked at load")
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "registry-appliance"),
                    x509.NameAttribute(NameOID.COMMON_NAME, name[:_CN_MAX]),
                ]
            )
        )
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
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
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert, key_pem


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


# --- reporting ---------------------------------------------------------------------------------


def expiry_warning(ca: CertificateAuthority, *, now: datetime.datetime | None = None) -> str | None:
    """A one-line warning when the CA expires within 30 days (or has), else None."""
    return _expiry_warning(ca.certificate, ca.cert_path, now or _utcnow())


def _expiry_warning(cert: x509.Certificate, path: Path, now: datetime.datetime) -> str | None:
    not_after = cert.not_valid_after_utc
    days = (not_after - now).days
    if now >= not_after:
        return (
            f"the CA certificate {path} expired on {not_after:%Y-%m-%d %H:%M} UTC: clients reject every "
            "intercepted connection; replace it (remove ca.crt and ca.key to have a new one created)"
        )
    if days < EXPIRY_WARNING_DAYS:
        return (
            f"the CA certificate {path} expires in {days} days ({not_after:%Y-%m-%d %H:%M} UTC); "
            "replace it and have clients trust the new one before then"
        )
    return None


def describe_ca(config: Config, *, now: datetime.datetime | None = None) -> str:
    """What ``appliance ca show`` prints.  Reads only the certificate: the key may be root-only."""
    path = config.ca_cert_path
    if not path.exists():
        return f"path:         {path}\nno CA yet: it is created on the first start of the appliance"
    cert = load_certificates(path)[0]
    current = now or _utcnow()
    lines = [
        f"path:         {path}",
        f"key:          {config.ca_key_path}",
        f"subject:      {cert.subject.rfc4514_string()}",
        f"sha256:       {fingerprint_sha256(cert)}",
        f"not after:    {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
        f"days left:    {(cert.not_valid_after_utc - current).days}",
    ]
    warning = _expiry_warning(cert, path, current)
    if warning is not None:
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines)
