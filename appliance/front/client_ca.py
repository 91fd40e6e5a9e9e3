"""The client CA: certificates that name an identity, checked on the TLS listener.

A registry mirror gets no password from Docker Engine (``registry-mirrors`` has no credentials), but
Docker, containerd, podman and skopeo all present a client certificate from their ``certs.d`` (or
``--cert-dir``) directory.  So the appliance runs a CA of its own for clients, separate from the
interception CA: ``ca_dir/client-ca.crt`` and ``client-ca.key``, created by the first
``appliance client-cert issue``.  A certificate it issues names one identity (the subject CN and a
``urn:registry-appliance:identity:NAME`` URI SAN) and is good for client authentication only; the
interception CA never vouches for a client and the client CA never vouches for a server.

Creating and issuing block (key generation, file I/O): the CLI calls them directly, the engine only
reads ``client-ca.crt`` at start.
"""

from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.config.access import NAME
from appliance.errors import ConfigError
from appliance.front.ca import BACKDATE, CertificateAuthority, new_key, utcnow

CLIENT_CA_CERT = "client-ca.crt"
CLIENT_CA_KEY = "client-ca.key"
IDENTITY_URI_PREFIX = "urn:registry-appliance:identity:"
DEFAULT_LIFETIME = datetime.timedelta(days=365)
# The file names Docker, containerd, podman and skopeo look for in a certs.d / --cert-dir directory.
CERT_FILE = "client.cert"
KEY_FILE = "client.key"
SERVER_CA_FILE = "ca.crt"


def client_ca_paths(ca_dir: Path) -> tuple[Path, Path]:
    return ca_dir / CLIENT_CA_CERT, ca_dir / CLIENT_CA_KEY


def load_or_create(ca_dir: Path) -> CertificateAuthority:
    """The client CA in ``ca_dir``, created when absent (blocking)."""
    cert_path, key_path = client_ca_paths(ca_dir)
    if not cert_path.exists() and not key_path.exists():
        try:
            # pathlen 0: it signs client certificates, never another CA.
            return CertificateAuthority.create(cert_path, key_path, label="client CA", path_length=0)
        except OSError as exc:
            raise ConfigError(str(exc.filename or key_path), f"cannot create the client CA: {exc}") from None
    return CertificateAuthority.load_or_create(cert_path, key_path)


def trust_client_ca(context: ssl.SSLContext, ca_dir: Path) -> bool:
    """Ask for (not require) a client certificate from the client CA, if one exists (blocking).

    Optional, because the same listener serves password and token clients; a certificate that is
    presented must verify, or the handshake fails.  False when there is no client CA yet.
    """
    cert_path, _ = client_ca_paths(ca_dir)
    if not cert_path.exists():
        return False
    try:
        context.load_verify_locations(cafile=str(cert_path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(str(cert_path), f"cannot use it as the client CA: {exc}") from None
    context.verify_mode = ssl.CERT_OPTIONAL
    return True


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    name: str
    certificate: x509.Certificate
    key_pem: bytes

    def __repr__(self) -> str:
        return f"IssuedCertificate(name={self.name!r}, serial={self.certificate.serial_number:x})"


def issue(
    ca: CertificateAuthority,
    name: str,
    *,
    lifetime: datetime.timedelta = DEFAULT_LIFETIME,
    now: datetime.datetime | None = None,
) -> IssuedCertificate:
    """A client certificate naming the identity ``name``, signed by the client CA (pure)."""
    if not NAME.fullmatch(name):
        raise ConfigError("NAME", f"{name!r} is not an identity name (letters, digits, . _ -)")
    now = now or utcnow()
    key = new_key()
    not_after = min(now + lifetime, ca.certificate.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "registry-appliance client"),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(IDENTITY_URI_PREFIX + name)]),
            critical=False,
        )
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
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return IssuedCertificate(name, cert, key_pem)


def write_bundle(issued: IssuedCertificate, out: Path, server_ca_pem: bytes) -> list[Path]:
    """``client.cert``, ``client.key`` (0600) and the server CA as ``ca.crt``: a certs.d directory."""
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path, ca_path = out / CERT_FILE, out / KEY_FILE, out / SERVER_CA_FILE
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(issued.key_pem)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    ca_path.write_bytes(server_ca_pem)
    return [cert_path, key_path, ca_path]


def identity_of_peer(peer: dict[str, object] | None) -> str | None:
    """The identity a verified client certificate names (``ssl`` ``getpeercert()`` form), if any.

    Only a certificate the client CA verified reaches here (the handshake fails otherwise); the
    URI SAN is preferred over the CN, which is kept for certificates made by other tools.
    """
    if not peer:
        return None
    for kind, value in peer.get("subjectAltName", ()):  # type: ignore[attr-defined]
        if kind == "URI" and isinstance(value, str) and value.startswith(IDENTITY_URI_PREFIX):
            name = value.removeprefix(IDENTITY_URI_PREFIX)
            return name if NAME.fullmatch(name) else None
    for rdn in peer.get("subject", ()):  # type: ignore[attr-defined]
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str) and NAME.fullmatch(value):
                return value
    return None
