"""The client CA: separate from the interception CA, issuing certificates that name one identity."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.errors import ConfigError
from appliance.front import client_ca
from appliance.front.ca import CertificateAuthority


def test_the_client_ca_is_created_once_beside_the_interception_ca_and_is_another_key(tmp_path: Path) -> None:
    interception = CertificateAuthority.load_or_create(tmp_path / "ca.crt", tmp_path / "ca.key")
    clients = client_ca.load_or_create(tmp_path)
    assert clients.fingerprint_sha256 != interception.fingerprint_sha256
    assert "client CA" in clients.subject
    assert (tmp_path / "client-ca.key").stat().st_mode & 0o077 == 0
    assert client_ca.load_or_create(tmp_path).fingerprint_sha256 == clients.fingerprint_sha256


def test_an_issued_certificate_names_the_identity_and_is_for_client_authentication_only(
    tmp_path: Path,
) -> None:
    ca = client_ca.load_or_create(tmp_path)
    issued = client_ca.issue(ca, "ci-runner")
    usage = issued.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert "BEGIN" not in repr(issued)
    written = client_ca.write_bundle(issued, tmp_path / "out", ca.cert_pem)
    assert [path.name for path in written] == ["client.cert", "client.key", "ca.crt"]
    assert (tmp_path / "out" / "client.key").stat().st_mode & 0o077 == 0


def test_names_that_are_not_identities_are_refused(tmp_path: Path) -> None:
    ca = client_ca.load_or_create(tmp_path)
    with pytest.raises(ConfigError, match="not an identity name"):
        client_ca.issue(ca, "alice/../root")


def test_the_identity_is_read_from_the_uri_san_first_then_the_common_name() -> None:
    uri = {
        "subjectAltName": (("URI", "urn:registry-appliance:identity:ci"),),
        "subject": ((("commonName", "x"),),),
    }
    assert client_ca.identity_of_peer(uri) == "ci"
    assert client_ca.identity_of_peer({"subject": ((("commonName", "bob"),),)}) == "bob"
    assert client_ca.identity_of_peer({"subject": ((("commonName", "bad name"),),)}) is None
    assert client_ca.identity_of_peer(None) is None


def test_a_listener_asks_for_client_certificates_only_once_a_client_ca_exists(tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert not client_ca.trust_client_ca(context, tmp_path)
    assert context.verify_mode is ssl.CERT_NONE
    client_ca.load_or_create(tmp_path)
    assert client_ca.trust_client_ca(context, tmp_path)
    assert context.verify_mode is ssl.CERT_OPTIONAL
