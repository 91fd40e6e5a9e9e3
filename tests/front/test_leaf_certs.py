"""Leaf certificates: minted per host on demand, verified in real handshakes, kept in a bounded LRU."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.front.ca import CertificateAuthority
from appliance.front.leaf_certs import LeafCertificates, mint_leaf, server_context_from_pem
from tests.fixtures.tls import handshake


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "ca.key")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


async def test_a_leaf_verifies_against_the_ca_in_a_real_handshake(ca: CertificateAuthority) -> None:
    leaves = LeafCertificates(ca)
    leaf = await handshake(await leaves.server_context_async("registry.test"), ca.cert_path, "registry.test")
    assert _san(leaf).get_values_for_type(x509.DNSName) == ["registry.test"]
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


async def test_a_leaf_for_an_ip_literal_has_an_ip_san(ca: CertificateAuthority) -> None:
    leaves = LeafCertificates(ca)
    leaf = await handshake(leaves.server_context("127.0.0.1"), ca.cert_path, "127.0.0.1")
    assert _san(leaf).get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert _san(leaf).get_values_for_type(x509.DNSName) == []


async def test_a_leaf_for_an_ipv6_literal_in_brackets(ca: CertificateAuthority) -> None:
    leaves = LeafCertificates(ca)
    leaves.server_context("[::1]")
    leaf = leaves.certificate("::1")
    assert leaf is not None
    assert _san(leaf).get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("::1")]


async def test_the_second_handshake_for_a_host_does_not_mint(ca: CertificateAuthority) -> None:
    leaves = LeafCertificates(ca)
    first = await leaves.server_context_async("registry.test")
    await handshake(first, ca.cert_path, "registry.test")
    second = await leaves.server_context_async("Registry.Test.")  # same host, other spelling
    await handshake(second, ca.cert_path, "registry.test")
    assert second is first
    assert (leaves.minted, leaves.hits) == (1, 1)


async def test_concurrent_handshakes_for_a_new_host_mint_once(ca: CertificateAuthority) -> None:
    leaves = LeafCertificates(ca)
    contexts = await asyncio.gather(*(leaves.server_context_async("new.test") for _ in range(5)))
    assert leaves.minted == 1
    assert all(c is contexts[0] for c in contexts)


async def test_a_newly_added_host_gets_a_leaf_without_restart(ca: CertificateAuthority) -> None:
    leaves = LeafCertificates(ca)
    await handshake(await leaves.server_context_async("a.test"), ca.cert_path, "a.test")
    leaf = await handshake(await leaves.server_context_async("b.test"), ca.cert_path, "b.test")
    assert _san(leaf).get_values_for_type(x509.DNSName) == ["b.test"]
    assert leaves.minted == 2


async def test_a_leaf_near_expiry_is_renewed(ca: CertificateAuthority) -> None:
    now = [_now()]

    def clock() -> datetime.datetime:
        return now[0]

    leaves = LeafCertificates(
        ca, lifetime=datetime.timedelta(hours=10), renew_before=datetime.timedelta(hours=8), clock=clock
    )
    first = leaves.server_context("registry.test")
    now[0] += datetime.timedelta(hours=1)
    assert leaves.server_context("registry.test") is first  # 9h left: still fresh
    now[0] += datetime.timedelta(hours=1, minutes=1)  # under 8h left: renew
    renewed = leaves.server_context("registry.test")
    assert renewed is not first
    assert leaves.minted == 2
    leaf = await handshake(renewed, ca.cert_path, "registry.test")
    assert leaf.not_valid_after_utc > _now() + datetime.timedelta(hours=11)


def test_a_leaf_never_outlives_its_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(
        tmp_path / "ca.crt", tmp_path / "ca.key", lifetime=datetime.timedelta(days=3)
    )
    leaves = LeafCertificates(ca, lifetime=datetime.timedelta(days=30))
    context = leaves.server_context("registry.test")
    leaf = leaves.certificate("registry.test")
    assert leaf is not None and leaf.not_valid_after_utc <= ca.not_after
    # Within renew_before of the CA's end: kept, not re-minted on every handshake.
    assert leaves.server_context("registry.test") is context
    assert leaves.minted == 1


def test_the_store_is_a_bounded_lru(ca: CertificateAuthority) -> None:
    leaves = LeafCertificates(ca, max_entries=2)
    a = leaves.server_context("a.test")
    leaves.server_context("b.test")
    assert leaves.server_context("a.test") is a  # touch a: b is now the oldest
    leaves.server_context("c.test")
    assert len(leaves) == 2
    assert leaves.certificate("b.test") is None
    assert leaves.server_context("a.test") is a
    assert leaves.minted == 3
    leaves.server_context("b.test")
    assert leaves.minted == 4


@pytest.mark.parametrize("bad", ["", "bad host", "a/b", "x" * 300, "-lead.test", "*.test"])
def test_a_name_that_is_no_host_is_refused(ca: CertificateAuthority, bad: str) -> None:
    with pytest.raises(ValueError):
        LeafCertificates(ca).server_context(bad)


def test_the_private_directory_fallback_leaves_no_key_behind(
    ca: CertificateAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Force the path taken where memfd is unavailable, with temp files under our own directory.
    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    monkeypatch.setattr(tempfile, "tempdir", None)
    cert, key_pem = mint_leaf(ca, "x.test", now=_now(), lifetime=datetime.timedelta(days=1))
    context = server_context_from_pem(cert.public_bytes(serialization.Encoding.PEM) + ca.cert_pem, key_pem)
    assert isinstance(context, ssl.SSLContext)
    assert list((tmp_path / "tmp").iterdir()) == []
