"""The CA: created once and reused, or the user's own; its expiry warning and ``ca show``."""

from __future__ import annotations

import datetime
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from appliance.config.model import Config
from appliance.errors import ConfigError
from appliance.front.ca import CertificateAuthority, build_root, describe_ca, expiry_warning, new_key
from appliance.front.leaf_certs import LeafCertificates, mint_leaf
from tests.fixtures.tls import handshake

OPENSSL = "/usr/bin/openssl"
needs_openssl = pytest.mark.skipif(not Path(OPENSSL).exists(), reason="openssl CLI not installed")


@pytest.fixture
def ca_paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "ca.key"


@pytest.fixture
def ca(ca_paths: tuple[Path, Path]) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(*ca_paths)


def _openssl(*args: str | Path) -> None:
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=60)


def _seed_style_ca(
    directory: Path, *, days: int = 1300, passphrase: str | None = "foobar"
) -> tuple[Path, Path]:
    """A CA made the way the seed's create_ca_cert.sh makes it: RSA, key encrypted with ``foobar``."""
    key, cert = directory / "seed.key", directory / "seed.crt"
    # 2048 rather than the seed's 4096 only to keep the test fast; the format is the same.
    if passphrase is None:
        _openssl("genrsa", "-out", key, "2048")
    else:
        _openssl("genrsa", "-aes256", "-passout", f"pass:{passphrase}", "-out", key, "2048")
    _openssl(
        "req", "-new", "-x509", "-key", key, "-out", cert, "-days", str(days),
        *(["-passin", f"pass:{passphrase}"] if passphrase else []),
        "-subj", "/C=NL/ST=Noord Holland/L=Amsterdam/O=ME/OU=IT/CN=DockerMirrorBox CA Root test",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- the CA -------------------------------------------------------------------------------------


def test_first_start_creates_an_ec_ca_with_a_private_key_file(
    ca: CertificateAuthority, ca_paths: tuple[Path, Path]
) -> None:
    cert_path, key_path = ca_paths
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert b"ENCRYPTED" not in key_path.read_bytes()
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    # pathlen 1: room for the name-constrained intermediate, and no more.
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 1
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=3640) < lifetime < datetime.timedelta(days=3660)
    assert "registry-appliance" in ca.subject
    assert ca.cert_pem == cert_path.read_bytes()
    assert 3640 < ca.days_left() < 3660
    # No temp files left behind by the atomic writes.
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["ca.crt", "ca.key"]


def test_the_key_is_private_even_under_a_permissive_umask(ca_paths: tuple[Path, Path]) -> None:
    old = os.umask(0)
    try:
        CertificateAuthority.load_or_create(*ca_paths)
    finally:
        os.umask(old)
    assert stat.S_IMODE(ca_paths[1].stat().st_mode) == 0o600


def test_a_restart_reuses_the_same_ca(ca: CertificateAuthority, ca_paths: tuple[Path, Path]) -> None:
    again = CertificateAuthority.load_or_create(*ca_paths)
    assert again.fingerprint_sha256 == ca.fingerprint_sha256
    assert again.cert_pem == ca.cert_pem


def test_fingerprint_matches_openssl(ca: CertificateAuthority, ca_paths: tuple[Path, Path]) -> None:
    if not Path(OPENSSL).exists():
        pytest.skip("openssl CLI not installed")
    out = subprocess.run(
        [OPENSSL, "x509", "-noout", "-fingerprint", "-sha256", "-in", str(ca_paths[0])],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    assert out.strip().split("=", 1)[1] == ca.fingerprint_sha256


@needs_openssl
def test_a_seed_ca_with_a_foobar_encrypted_rsa_key_is_loaded_as_is(tmp_path: Path) -> None:
    cert_path, key_path = _seed_style_ca(tmp_path)
    before = (cert_path.read_bytes(), key_path.read_bytes())
    ca = CertificateAuthority.load_or_create(cert_path, key_path)
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    assert "DockerMirrorBox" in ca.subject
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before  # loaded, never rewritten


@needs_openssl
async def test_leaves_signed_by_a_user_rsa_ca_verify_in_a_real_handshake(tmp_path: Path) -> None:
    cert_path, key_path = _seed_style_ca(tmp_path, passphrase=None)
    ca = CertificateAuthority.load(cert_path, key_path)
    leaves = LeafCertificates(ca)
    leaf = await handshake(leaves.server_context("registry.test"), cert_path, "registry.test")
    assert leaf.issuer == ca.certificate.subject


@needs_openssl
def test_a_key_encrypted_with_another_passphrase_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    cert_path, key_path = _seed_style_ca(tmp_path, passphrase="not-the-seed-one")
    with pytest.raises(ConfigError) as caught:
        CertificateAuthority.load(cert_path, key_path)
    assert caught.value.where == str(key_path)
    assert "passphrase" in caught.value.message
    assert "not-the-seed-one" not in str(caught.value)


def test_a_cert_with_someone_elses_key_is_a_config_error(tmp_path: Path) -> None:
    first = CertificateAuthority.create(tmp_path / "a.crt", tmp_path / "a.key")
    CertificateAuthority.create(tmp_path / "b.crt", tmp_path / "b.key")
    with pytest.raises(ConfigError) as caught:
        CertificateAuthority.load(first.cert_path, tmp_path / "b.key")
    assert caught.value.where == str(tmp_path / "b.key")
    assert "does not belong" in caught.value.message


@pytest.mark.parametrize("broken", ["cert", "key"])
def test_garbage_files_are_a_config_error_naming_the_file(
    ca: CertificateAuthority, ca_paths: tuple[Path, Path], broken: str
) -> None:
    target = ca_paths[0] if broken == "cert" else ca_paths[1]
    target.write_bytes(b"\x00garbage, not PEM\n")
    with pytest.raises(ConfigError) as caught:
        CertificateAuthority.load_or_create(*ca_paths)
    assert caught.value.where == str(target)


def test_an_unreadable_file_is_a_config_error_naming_it(ca: CertificateAuthority) -> None:
    ca.key_path.unlink()
    ca.key_path.mkdir()  # exists but cannot be read (unlike chmod 000, this holds for root too)
    with pytest.raises(ConfigError) as caught:
        CertificateAuthority.load_or_create(ca.cert_path, ca.key_path)
    assert caught.value.where == str(ca.key_path)


def test_only_one_of_the_two_files_is_a_config_error_not_a_new_ca(ca_paths: tuple[Path, Path]) -> None:
    CertificateAuthority.load_or_create(*ca_paths)
    ca_paths[1].unlink()
    with pytest.raises(ConfigError) as caught:
        CertificateAuthority.load_or_create(*ca_paths)
    assert caught.value.where == str(ca_paths[1])
    assert not ca_paths[1].exists()


def test_a_ca_directory_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(ConfigError) as caught:
        CertificateAuthority.load_or_create(tmp_path / "file" / "ca.crt", tmp_path / "file" / "ca.key")
    assert "file" in caught.value.where and "cannot create" in caught.value.message


def test_a_leaf_certificate_is_refused_as_a_ca(ca: CertificateAuthority, tmp_path: Path) -> None:
    cert, key_pem = mint_leaf(ca, "leaf.test", now=_now(), lifetime=datetime.timedelta(days=1))
    (tmp_path / "leaf.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(key_pem)
    with pytest.raises(ConfigError, match="not a CA"):
        CertificateAuthority.load(tmp_path / "leaf.crt", tmp_path / "leaf.key")


# --- expiry reporting ---------------------------------------------------------------------------


def test_a_fresh_ca_gets_no_expiry_warning(ca: CertificateAuthority) -> None:
    assert expiry_warning(ca) is None


def test_a_ca_expiring_within_30_days_is_warned_about(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(
        tmp_path / "ca.crt", tmp_path / "ca.key", lifetime=datetime.timedelta(days=10)
    )
    warning = expiry_warning(ca)
    assert warning is not None and "expires in 9 days" in warning
    later = _now() + datetime.timedelta(days=11)
    expired = expiry_warning(ca, now=later)
    assert expired is not None and "expired" in expired


def test_ca_show_prints_path_subject_fingerprint_and_expiry(ca: CertificateAuthority, tmp_path: Path) -> None:
    text = describe_ca(Config(ca_dir=tmp_path / "ca"))
    assert str(ca.cert_path) in text
    assert ca.fingerprint_sha256 in text
    assert ca.subject in text
    assert f"{ca.not_after:%Y-%m-%d}" in text
    assert "name-constrained to the configured registries" in text
    assert "WARNING" not in text


def test_ca_show_warns_that_a_pathlen_0_ca_signs_leaves_unconstrained(tmp_path: Path) -> None:
    key = new_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "registry-appliance")])
    (tmp_path / "ca.crt").write_bytes(
        build_root(key, name, now=_now(), path_length=0).public_bytes(serialization.Encoding.PEM)
    )
    text = describe_ca(Config(ca_cert_file=tmp_path / "ca.crt", ca_key_file=tmp_path / "ca.key"))
    assert "name-constrained" not in text
    assert "WARNING: " in text and "pathlen:0" in text and "without name constraints" in text


@needs_openssl
def test_ca_show_warns_that_a_brought_ca_itself_is_unconstrained(tmp_path: Path) -> None:
    cert_path, key_path = _seed_style_ca(tmp_path)
    text = describe_ca(Config(ca_cert_file=cert_path, ca_key_file=key_path))
    assert "name-constrained to the configured registries" in text
    assert "WARNING: " in text and "not created by the appliance" in text


def test_ca_show_warns_about_a_ca_near_expiry(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path / "ca.crt", tmp_path / "ca.key", lifetime=datetime.timedelta(days=5))
    text = describe_ca(Config(ca_cert_file=tmp_path / "ca.crt", ca_key_file=tmp_path / "ca.key"))
    assert "days left:    4" in text
    assert "WARNING" in text


def test_ca_show_before_the_first_start_creates_nothing(tmp_path: Path) -> None:
    text = describe_ca(Config(ca_dir=tmp_path / "ca"))
    assert "no CA yet" in text
    assert not (tmp_path / "ca").exists()


def test_ca_show_needs_only_the_certificate(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca.key_path.unlink()  # e.g. a key readable by root only
    assert ca.fingerprint_sha256 in describe_ca(Config(ca_dir=tmp_path / "ca"))
