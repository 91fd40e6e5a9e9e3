"""Digest parsing/validation and incremental hashing."""

from __future__ import annotations

import hashlib

import pytest

from appliance.digests import Algorithm, DigestHasher, digest_of, is_digest, parse_digest

HEX256 = hashlib.sha256(b"x").hexdigest()
HEX512 = hashlib.sha512(b"x").hexdigest()


def test_parses_sha256_and_sha512_canonical_forms() -> None:
    d = parse_digest(f"sha256:{HEX256}")
    assert (d.algorithm, d.hex, str(d)) == (Algorithm.SHA256, HEX256, f"sha256:{HEX256}")
    assert parse_digest(f"sha512:{HEX512}").algorithm is Algorithm.SHA512


@pytest.mark.parametrize(
    "text",
    [
        f"sha256:{HEX256.upper()}",
        f"sha256:{HEX256[:-1]}",
        f"sha512:{HEX256}",
        f"md5:{HEX256}",
        f"sha256:{HEX256}\n",
        "sha256:../../etc/passwd",
        HEX256,
        "",
    ],
)
def test_rejects_anything_but_canonical_digests(text: str) -> None:
    with pytest.raises(ValueError, match="invalid digest"):
        parse_digest(text)
    assert not is_digest(text)


def test_hasher_counts_bytes_and_matches_only_the_right_digest() -> None:
    hasher = DigestHasher(Algorithm.SHA256)
    hasher.update(b"he")
    hasher.update(b"llo")
    assert hasher.length == 5
    assert hasher.matches(digest_of(b"hello"))
    assert not hasher.matches(digest_of(b"hellO"))
    assert not hasher.matches(digest_of(b"hello", Algorithm.SHA512))
    assert str(hasher.digest()) == "sha256:" + hashlib.sha256(b"hello").hexdigest()
