"""The cold-pull floor's bare fill: it fetches, hashes and checks real blobs, and refuses wrong ones."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bench.fill_floor import FloorFill
from tests.fixtures.badupstream import BadUpstream, Mode
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import REGISTRY_HOST, TestPKI
from tests.fixtures.process import FixtureError
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e


def _blobs(image: ImageInfo) -> list[str]:
    return [image.config_digest, *image.layer_digests]


def _fill(
    address: tuple[str, int],
    pki: TestPKI,
    tmp_path: Path,
    image: ImageInfo,
    creds: tuple[str, str] | None = None,
) -> FloorFill:
    return FloorFill(address, REGISTRY_HOST, pki.ca_file, tmp_path, image.repository, _blobs(image), creds)


def test_fetches_every_blob_with_basic_credentials_and_counts_their_bytes(
    htpasswd_registry: UpstreamRegistry, pki: TestPKI, push_test_image: ImagePusher, tmp_path: Path
) -> None:
    image = push_test_image(htpasswd_registry, layer_sizes=(3 << 20, 4096))
    scratch = tmp_path / "floor"
    scratch.mkdir()
    fill = _fill(htpasswd_registry.address, pki, scratch, image, creds=htpasswd_registry.creds)
    fill.go()
    seconds, fetched = fill.finish()
    assert fetched == image.total_size
    assert 0 < seconds < 60
    assert list(scratch.iterdir()) == []  # nothing left behind


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (Mode.CORRUPT, r"hash to sha256:"),  # same length, one byte flipped
        (Mode.CUT, r"blobs/sha256:[0-9a-f]{64}: cut off at \d+ of \d+ bytes"),
    ],
    ids=["wrong-bytes", "cut-off"],
)
def test_refuses_a_blob_the_upstream_spoils(
    mode: Mode,
    reason: str,
    open_registry: UpstreamRegistry,
    pki: TestPKI,
    push_test_image: ImagePusher,
    tmp_path: Path,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(1 << 20,))
    with BadUpstream(open_registry, pki) as bad:
        bad.mode = mode
        fill = _fill(("127.0.0.1", bad.port), pki, tmp_path, image)
        fill.go()
        with pytest.raises(FixtureError, match=reason):
            fill.finish()


def test_reports_an_answer_that_is_not_the_blob(
    htpasswd_registry: UpstreamRegistry, pki: TestPKI, push_test_image: ImagePusher, tmp_path: Path
) -> None:
    image = push_test_image(htpasswd_registry, layer_sizes=(4096,))
    fill = _fill(htpasswd_registry.address, pki, tmp_path, image, creds=("alice", "not-her-password"))
    fill.go()
    with pytest.raises(FixtureError, match="answered 401"):
        fill.finish()


def test_says_why_when_it_cannot_reach_the_registry(
    pki: TestPKI, push_test_image: ImagePusher, open_registry: UpstreamRegistry, tmp_path: Path
) -> None:
    image = push_test_image(open_registry, layer_sizes=(4096,))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(FixtureError, match=r"did not connect.*Connection refused"):
            _fill(("127.0.0.1", port), pki, tmp_path, image)
