"""Pull-ahead against a real registry: a started pull fills the rest; an inspection fetches nothing."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from appliance import oci
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import curl, skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e


def _appliance(tmp_path: Path, pki: TestPKI, registry: UpstreamRegistry, **toml: object) -> Appliance:
    spec = UpstreamSpec(registry.name_port, registry.host_port)
    return Appliance(tmp_path / "appliance", [spec], upstream_ca=pki.ca_file, extra_toml=toml)


def _get(appliance: Appliance, registry: UpstreamRegistry, path: str) -> None:
    answer = curl(
        f"https://{registry.name_port}/v2/{path}",
        proxy=appliance.url,
        cacert=appliance.cert_dir() / "ca.crt",
        headers={"Accept": oci.FULL_ACCEPT},
    )
    assert answer.status == 200, (path, answer.status, answer.stderr)


def _upstream_blob_gets(registry: UpstreamRegistry, image: ImageInfo) -> Counter[str]:
    return Counter(str(r.path).rsplit("/", 1)[-1] for r in registry.blob_requests(image.repository))


def _wait_until_idle(appliance: Appliance, within: float = 10.0) -> None:
    """Until no request is being served and no pull-ahead runs.

    A pull-ahead starts with the fill of the blob that triggers it, before that blob is answered:
    once the client has its answers, any pull-ahead they caused is counted here until it has
    finished, so "none running" after them means none was started or all have asked upstream.
    """
    deadline = time.monotonic() + within
    while True:
        health = appliance.health()
        if health["requests_active"] == 0 and health["pull_aheads_active"] == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the appliance did not settle within {within}s: {health}")
        time.sleep(0.02)


def _wait_for_gets(registry: UpstreamRegistry, image: ImageInfo, count: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while sum(_upstream_blob_gets(registry, image).values()) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_started_pull_fills_the_other_layers_once_each_before_the_client_asks(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(30_000, 40_000, 50_000, 60_000))
    every_blob = {image.config_digest, *image.layer_digests}
    with _appliance(tmp_path, pki, open_registry) as appliance:
        open_registry.clear_requests()
        _get(appliance, open_registry, f"{image.repository}/manifests/{image.tag}")
        _get(appliance, open_registry, f"{image.repository}/blobs/{image.layer_digests[0]}")
        _wait_for_gets(open_registry, image, len(every_blob))
        # The client asked for one layer; the appliance fetched the config and the other three.
        assert _upstream_blob_gets(open_registry, image) == Counter(every_blob)
        result = skopeo_copy(
            f"docker://{image.reference(open_registry.name_port)}",
            f"dir:{tmp_path / 'pulled'}",
            https_proxy=appliance.url,
            cert_dir=appliance.cert_dir(),
        )
        assert result.ok, result.output
        # The whole pull cost each blob once upstream, and the client got every blob from the cache.
        assert _upstream_blob_gets(open_registry, image) == Counter(every_blob)
        events = [e for e in appliance.events() if " blob " in e and image.repository in e]
        client_statuses = [e.split()[0] for e in events if " pull-ahead " not in e]
        assert client_statuses[0] == "MISS"
        assert set(client_statuses[1:]) <= {"HIT", "COALESCED"}, events
        # What the appliance fetched on its own shows in the log as upstream traffic of its own.
        ahead = [e for e in events if " pull-ahead " in e]
        assert len(ahead) == 4 and all(e.startswith("MISS") for e in ahead), events
        assert "pull-ahead: 4 of 4 blobs" in appliance.log_text()


def test_an_inspection_reads_the_manifest_and_config_and_downloads_no_layer(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(30_000, 40_000))
    with _appliance(tmp_path, pki, open_registry) as appliance:
        open_registry.clear_requests()
        # What `skopeo inspect` does: the manifest, then the config blob.
        _get(appliance, open_registry, f"{image.repository}/manifests/{image.tag}")
        _get(appliance, open_registry, f"{image.repository}/blobs/{image.config_digest}")
        _wait_until_idle(appliance)
        assert _upstream_blob_gets(open_registry, image) == Counter([image.config_digest])
        assert "pull-ahead" not in appliance.log_text()


def test_pull_ahead_off_leaves_the_other_layers_to_the_client(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(30_000, 40_000))
    with _appliance(tmp_path, pki, open_registry, cache={"pull_ahead": 0}) as appliance:
        open_registry.clear_requests()
        _get(appliance, open_registry, f"{image.repository}/manifests/{image.tag}")
        _get(appliance, open_registry, f"{image.repository}/blobs/{image.layer_digests[0]}")
        _wait_until_idle(appliance)
        assert _upstream_blob_gets(open_registry, image) == Counter([image.layer_digests[0]])


def test_mirror_mode_pulls_ahead_too(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(30_000, 40_000, 50_000))
    every_blob = {image.config_digest, *image.layer_digests}
    with _appliance(tmp_path, pki, open_registry) as appliance:
        open_registry.clear_requests()
        ns = f"?ns={open_registry.name_port}"
        for path in (f"manifests/{image.tag}", f"blobs/{image.layer_digests[-1]}"):
            answer = curl(
                f"{appliance.url}/v2/{image.repository}/{path}{ns}", headers={"Accept": oci.FULL_ACCEPT}
            )
            assert answer.status == 200, (path, answer.status, answer.stderr)
        _wait_for_gets(open_registry, image, len(every_blob))
        assert _upstream_blob_gets(open_registry, image) == Counter(every_blob)
