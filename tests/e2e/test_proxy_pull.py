"""Issue 3/4 acceptance: real clients pull through the appliance as an HTTPS proxy, no credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import ALICE
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import skopeo_copy
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e


def _blob_files(directory: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in directory.iterdir() if len(p.name) == 64}


@pytest.fixture
def appliance_for_htpasswd(
    tmp_path: Path, pki: TestPKI, htpasswd_registry: UpstreamRegistry
) -> Iterator[Appliance]:
    spec = UpstreamSpec(htpasswd_registry.name_port, htpasswd_registry.host_port, credentials=ALICE)
    with Appliance(tmp_path / "appliance", [spec], upstream_ca=pki.ca_file) as appliance:
        yield appliance


def test_skopeo_pulls_private_image_through_proxy_without_credentials_then_hits(
    tmp_path: Path,
    appliance_for_htpasswd: Appliance,
    htpasswd_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(htpasswd_registry, layer_sizes=(40_000, 30_000, 20_000))
    appliance = appliance_for_htpasswd
    trust = appliance.cert_dir()
    htpasswd_registry.clear_requests()

    first = skopeo_copy(
        f"docker://{image.reference(htpasswd_registry.name_port)}",
        f"dir:{tmp_path / 'first'}",
        https_proxy=appliance.url,
        cert_dir=trust,
    ).check()
    assert first.digest == image.manifest_digest
    assert _blob_files(tmp_path / "first") >= set(image.layer_digests)
    fetched = htpasswd_registry.blob_requests(image.repository)
    assert {r.path.rsplit("/", 1)[1] for r in fetched if r.status == 200} >= set(image.layer_digests)

    htpasswd_registry.clear_requests()
    second = skopeo_copy(
        f"docker://{image.reference(htpasswd_registry.name_port)}",
        f"dir:{tmp_path / 'second'}",
        https_proxy=appliance.url,
        cert_dir=trust,
    ).check()
    assert second.digest == image.manifest_digest
    assert htpasswd_registry.blob_requests(image.repository) == []
    events = appliance.events()
    blob_events = [e for e in events if " blob " in e and image.repository in e]
    assert any(e.startswith("MISS") for e in blob_events), events
    assert sum(e.startswith("HIT") for e in blob_events) >= len(image.layer_digests), events
