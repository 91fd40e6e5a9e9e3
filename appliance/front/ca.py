"""The appliance's certificate authority: created once and reused, or the user's own.

Clients trust one CA (``ca.crt``, served at ``/ca.crt``).  The CA is created on first start and
reused across restarts, or it is the user's own (``CA_CRT_FILE``/``CA_KEY_FILE``).  A CA created
here has its key written 0600, never readable by others.  The leaf certificates it signs for
intercepted hosts are minted and stored in ``leaf_certs``.

Loading and creating block (key generation, file I/O): ``load_or_create`` runs in an executor,
once at start.
"""

from __future__ import annotations

import datetime
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from appliance.errors import ConfigError

if TYPE_CHECKING:
    from appliance.config.model import Config

CaKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CA_LIFETIME = datetime.timedelta(days=3650)
EXPIRY_WARNING_DAYS = 30
# The seed's create_ca_cert.sh encrypted its CA key with this; users bringing that CA along must
# not have to re-encode the key.  It is a well-known value, not a secret.
SEED_CA_PASSPHRASE = b"foobar"
# Certificates are backdated so a client whose clock is a little behind still accepts them.
BACKDATE = datetime.timedelta(days=1)
CN_MAX = 64  # ub-common-name (RFC 5280)
# pathlen 1: the root signs only the name-constrained intermediate (pathlen 0), which signs the
# leaves; a stolen leaf key can never sign anything.  Roots created before carry pathlen 0 and sign
# leaves directly (see ``intermediate.can_delegate``).
ROOT_PATH_LENGTH = 1
APPLIANCE_ORGANIZATION = "registry-appliance"


def utcnow() -> datetime.datetime:
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
        cls,
        cert_path: Path,
        key_path: Path,
        *,
        lifetime: datetime.timedelta = CA_LIFETIME,
        label: str = "CA",
        path_length: int = ROOT_PATH_LENGTH,
    ) -> CertificateAuthority:
        """Create a new CA and write it: key 0600 (atomically, never readable by others), then cert.

        ``label`` tells CAs apart by name (``CA``, ``client CA``)."""
        key = new_key()
        now = utcnow()
        host = socket.gethostname() or "localhost"  # no DNS lookup: that can hang for seconds
        common_name = f"registry-appliance {label} {host} {now:%Y-%m-%d}"[:CN_MAX]
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, APPLIANCE_ORGANIZATION),
                x509.NameAttribute(
                    NameOID.ORGANIZATIONAL_UNIT_NAME, f"container registry cache on {host}"[:CN_MAX]
                ),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        cert = build_root(key, name, now=now, lifetime=lifetime, path_length=path_length)
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
        return (self.not_after - (now or utcnow())).days

    def chain_pem(self) -> bytes:
        """The CA and its own issuers, as sent after a leaf."""
        return self.cert_pem + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.extra_chain)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh key for a CA or leaf: EC P-256 (fast to generate, accepted by every client)."""
    return ec.generate_private_key(ec.SECP256R1())


def build_root(
    key: CaKey,
    name: x509.Name,
    *,
    now: datetime.datetime,
    lifetime: datetime.timedelta = CA_LIFETIME,
    path_length: int = ROOT_PATH_LENGTH,
) -> x509.Certificate:
    """A self-signed CA certificate for ``key`` (pure: writes nothing)."""
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def ca_key_usage() -> x509.KeyUsage:
    """Signs certificates (and CRLs) only."""
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


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


# --- reporting ---------------------------------------------------------------------------------


def expiry_warning(ca: CertificateAuthority, *, now: datetime.datetime | None = None) -> str | None:
    """A one-line warning when the CA expires within 30 days (or has), else None."""
    return _expiry_warning(ca.certificate, ca.cert_path, now or utcnow())


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


def may_delegate(cert: x509.Certificate) -> bool:
    """Whether a CA may sign an intermediate CA (its ``pathLenConstraint`` is not 0)."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return True  # an old v1 root: no path length limit
    return constraints.path_length is None or constraints.path_length > 0


def delegation_warnings(cert: x509.Certificate, path: Path) -> list[str]:
    """What a CA vouches for beyond the registries, as warnings (none for the appliance's own)."""
    if not may_delegate(cert):
        return [
            f"the CA {path} may not sign an intermediate (pathlen:0, as in CAs created by earlier "
            "versions of the appliance): intercepted hosts get leaves signed by it directly, without "
            "name constraints, so clients that trust it trust it for every site; remove ca.crt and "
            "ca.key to have a new, constrained CA created (clients must trust it again)"
        ]
    organizations = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if [a.value for a in organizations] != [APPLIANCE_ORGANIZATION]:
        return [
            f"the CA {path} was not created by the appliance: intercepted hosts get leaves from an "
            "intermediate limited to the configured registries, but the CA itself is unconstrained: "
            "anything else signed with its key stays trusted by every client that trusts it"
        ]
    return []


def describe_ca(config: Config, *, now: datetime.datetime | None = None) -> str:
    """What ``appliance ca show`` prints.  Reads only the certificate: the key may be root-only."""
    path = config.ca_cert_path
    if not path.exists():
        return f"path:         {path}\nno CA yet: it is created on the first start of the appliance"
    cert = load_certificates(path)[0]
    current = now or utcnow()
    lines = [
        f"path:         {path}",
        f"key:          {config.ca_key_path}",
        f"subject:      {cert.subject.rfc4514_string()}",
        f"sha256:       {fingerprint_sha256(cert)}",
        f"not after:    {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
        f"days left:    {(cert.not_valid_after_utc - current).days}",
    ]
    if may_delegate(cert):
        lines.append("leaves:       from an intermediate name-constrained to the configured registries")
    warning = _expiry_warning(cert, path, current)
    if warning is not None:
        lines.append(f"WARNING: {warning}")
    lines += [f"WARNING: {w}" for w in delegation_warnings(cert, path)]
    return "\n".join(lines)
