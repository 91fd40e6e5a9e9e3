"""The name-constrained intermediate: what it permits, real OpenSSL enforcing it, re-issue on reload."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.config.model import Config, RegistryConfig
from appliance.front.ca import CertificateAuthority, build_root, new_key
from appliance.front.intermediate import (
    InterceptionCertificates,
    Intermediate,
    RegistryNames,
    can_delegate,
    intercepted_names,
    issue_intermediate,
    root_warnings,
)
from appliance.front.leaf_certs import mint_leaf
from tests.fixtures.tls import handshake

OPENSSL = "/usr/bin/openssl"
needs_openssl = pytest.mark.skipif(not Path(OPENSSL).exists(), reason="openssl CLI not installed")

CONFIG = Config(
    registries=(
        RegistryConfig(host="registry-1.docker.io", aliases=("docker.io",), auth_hosts=("auth.docker.io",)),
        RegistryConfig(host="registry.test:5000", auth_hosts=("token.test:8443",)),
        RegistryConfig(host="10.1.2.3:5000"),
    )
)


@pytest.fixture
def root(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "ca.key")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _constraints(cert: x509.Certificate) -> x509.Extension[x509.NameConstraints]:
    return cert.extensions.get_extension_for_class(x509.NameConstraints)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def test_the_names_are_every_registry_host_alias_and_realm_without_ports() -> None:
    names = intercepted_names(CONFIG)
    # registry-1.docker.io and auth.docker.io are under docker.io, which permits its subdomains.
    assert names.dns == ("docker.io", "registry.test", "token.test")
    assert names.ips == (ipaddress.ip_address("10.1.2.3"),)
    assert names.covers("auth.docker.io") and names.covers("REGISTRY.test.") and names.covers("10.1.2.3")
    assert not names.covers("evil.test") and not names.covers("test") and not names.covers("10.1.2.4")
    assert not names.covers("notregistry.test")


def test_the_intermediate_permits_the_names_and_excludes_every_other_ip(root: CertificateAuthority) -> None:
    intermediate = issue_intermediate(root, intercepted_names(CONFIG))
    cert = intermediate.certificate
    constraints = _constraints(cert)
    assert constraints.critical
    permitted = constraints.value.permitted_subtrees or []
    assert [n.value for n in permitted if isinstance(n, x509.DNSName)] == [
        "docker.io",
        "registry.test",
        "token.test",
    ]
    assert [n.value for n in permitted if isinstance(n, x509.IPAddress)] == [
        ipaddress.ip_network("10.1.2.3/32")
    ]
    excluded = [n.value for n in constraints.value.excluded_subtrees or [] if isinstance(n, x509.IPAddress)]
    assert ipaddress.ip_network("::/0") in excluded  # no IPv6 registry: the whole family
    v4 = [net for net in excluded if isinstance(net, ipaddress.IPv4Network)]
    # Together with the one permitted address, the excluded IPv4 ranges tile the whole space.
    assert sum(net.num_addresses for net in v4) == 2**32 - 1
    assert not any(net.overlaps(ipaddress.ip_network("10.1.2.3/32")) for net in v4)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and basic.path_length == 0
    assert cert.issuer == root.certificate.subject
    cert.verify_directly_issued_by(root.certificate)
    assert cert.not_valid_after_utc == root.not_after


def _openssl_verify(
    tmp_path: Path, root: CertificateAuthority, intermediate: Intermediate, name: str
) -> subprocess.CompletedProcess[str]:
    leaf, _key = mint_leaf(intermediate, name, now=_now(), lifetime=datetime.timedelta(days=1))
    (tmp_path / "root.pem").write_bytes(root.cert_pem)
    (tmp_path / "intermediate.pem").write_bytes(_pem(intermediate.certificate))
    (tmp_path / "leaf.pem").write_bytes(_pem(leaf))
    check = "-verify_ip" if name[0].isdigit() or ":" in name else "-verify_hostname"
    return subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(tmp_path / "root.pem"),
         "-untrusted", str(tmp_path / "intermediate.pem"),
         "-purpose", "sslserver", check, name, str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@needs_openssl
@pytest.mark.parametrize("name", ["registry.test", "auth.docker.io", "token.test", "10.1.2.3"])
def test_openssl_accepts_leaves_for_the_configured_names(
    tmp_path: Path, root: CertificateAuthority, name: str
) -> None:
    verdict = _openssl_verify(tmp_path, root, issue_intermediate(root, intercepted_names(CONFIG)), name)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


@needs_openssl
@pytest.mark.parametrize(
    ("name", "violation"),
    [
        ("bank.example", "permitted subtree violation"),
        ("registry.test.evil.example", "permitted subtree violation"),
        ("10.1.2.4", "permitted subtree violation"),
        ("::1", "permitted subtree violation"),
    ],
)
def test_openssl_rejects_a_leaf_outside_the_names_although_it_chains_to_the_root(
    tmp_path: Path, root: CertificateAuthority, name: str, violation: str
) -> None:
    verdict = _openssl_verify(tmp_path, root, issue_intermediate(root, intercepted_names(CONFIG)), name)
    assert verdict.returncode != 0
    assert violation in verdict.stdout + verdict.stderr


@needs_openssl
@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_with_no_ip_registry_an_ip_leaf_is_rejected_by_the_exclusions(
    tmp_path: Path, root: CertificateAuthority, address: str
) -> None:
    # DNS-only permitted subtrees leave IP SANs unconstrained (RFC 5280): only the exclusions stop them.
    names = intercepted_names(Config(registries=CONFIG.registries[:2]))
    verdict = _openssl_verify(tmp_path, root, issue_intermediate(root, names), address)
    assert verdict.returncode != 0
    assert "excluded subtree violation" in verdict.stdout + verdict.stderr


async def test_leaves_chain_to_the_intermediate_and_verify_against_the_root_alone(
    root: CertificateAuthority,
) -> None:
    certs = InterceptionCertificates(root, intercepted_names(CONFIG))
    assert isinstance(certs.issuer, Intermediate)
    leaf = await handshake(await certs.server_context_async("registry.test"), root.cert_path, "registry.test")
    assert leaf.issuer == certs.issuer.certificate.subject != root.certificate.subject
    assert root_warnings(root) == []  # the appliance's own root: nothing to warn about


def test_adding_a_name_outside_reissues_and_empties_the_leaf_store(root: CertificateAuthority) -> None:
    certs = InterceptionCertificates(root, intercepted_names(CONFIG))
    first = certs.issuer
    certs.server_context("registry.test")
    assert certs.certificate("registry.test") is not None

    # Under a permitted name already: the same intermediate and its leaves serve it.
    covered = Config(registries=(*CONFIG.registries, RegistryConfig(host="mirror.registry.test")))
    assert intercepted_names(covered) == intercepted_names(CONFIG)
    assert not certs.reconfigure(intercepted_names(covered))
    assert certs.issuer is first and certs.certificate("registry.test") is not None

    added = Config(registries=(*CONFIG.registries, RegistryConfig(host="late.test")))
    assert certs.reconfigure(intercepted_names(added))
    assert certs.issued == 2 and certs.issuer is not first
    assert certs.certificate("registry.test") is None  # its leaf named the old intermediate
    assert isinstance(certs.issuer, Intermediate) and certs.issuer.names.covers("late.test")
    certs.server_context("late.test")
    leaf = certs.certificate("late.test")
    assert leaf is not None and leaf.issuer == certs.issuer.certificate.subject


def test_removing_a_registry_reissues_without_it(root: CertificateAuthority) -> None:
    certs = InterceptionCertificates(root, intercepted_names(CONFIG))
    fewer = Config(registries=CONFIG.registries[:1])
    assert certs.reconfigure(intercepted_names(fewer))
    assert isinstance(certs.issuer, Intermediate)
    assert not certs.issuer.names.covers("registry.test")
    permitted = _constraints(certs.issuer.certificate).value.permitted_subtrees or []
    assert x509.DNSName("registry.test") not in permitted


def test_a_root_with_pathlen_0_signs_leaves_itself_and_is_warned_about(tmp_path: Path) -> None:
    key = new_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "registry-appliance")])
    cert = build_root(key, name, now=_now(), path_length=0)
    (tmp_path / "old.crt").write_bytes(_pem(cert))
    (tmp_path / "old.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    old = CertificateAuthority.load(tmp_path / "old.crt", tmp_path / "old.key")
    assert not can_delegate(old)
    certs = InterceptionCertificates(old, intercepted_names(CONFIG))
    assert certs.issuer is old and certs.issued == 0
    assert not certs.reconfigure(RegistryNames.of(["late.test"]))
    certs.server_context("late.test")
    leaf = certs.certificate("late.test")
    assert leaf is not None and leaf.issuer == old.certificate.subject
    (warning,) = root_warnings(old)
    assert "pathlen:0" in warning and "remove" in warning and str(tmp_path / "old.crt") in warning


def _seed_style_ca(directory: Path) -> tuple[Path, Path]:
    """A CA as the seed's create_ca_cert.sh makes it: RSA, CA:TRUE without a path length."""
    key, cert = directory / "seed.key", directory / "seed.crt"
    subprocess.run([OPENSSL, "genrsa", "-out", str(key), "2048"], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [OPENSSL, "req", "-new", "-x509", "-key", str(key), "-out", str(cert), "-days", "30",
         "-subj", "/C=NL/O=ME/OU=IT/CN=DockerMirrorBox CA Root test",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@needs_openssl
async def test_a_seed_ca_gets_a_constrained_intermediate_and_a_warning(tmp_path: Path) -> None:
    cert_path, key_path = _seed_style_ca(tmp_path)
    seed = CertificateAuthority.load(cert_path, key_path)
    certs = InterceptionCertificates(seed, intercepted_names(CONFIG))
    assert isinstance(certs.issuer, Intermediate)
    leaf = await handshake(certs.server_context("registry.test"), cert_path, "registry.test")
    assert leaf.issuer == certs.issuer.certificate.subject
    verdict = _openssl_verify(tmp_path, seed, certs.issuer, "bank.example")
    assert "permitted subtree violation" in verdict.stdout + verdict.stderr
    (warning,) = root_warnings(seed)
    assert "not created by the appliance" in warning and "unconstrained" in warning
