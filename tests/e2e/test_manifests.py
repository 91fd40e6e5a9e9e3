"""Issue 4 manifests: tag revalidation with HEAD, Accept-aware tag cache, HEAD never becomes GET.

A real registry, the appliance as an HTTPS proxy, and curl as the client (it lets the tests choose
the Accept header exactly, as different runtimes do).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import curl
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _curl(appliance: Appliance, url: str, *, accept: str, head: bool = False) -> tuple[dict[str, str], bytes]:
    answer = curl(
        url,
        proxy=appliance.url,
        cacert=appliance.cert_dir() / "ca.crt",
        head=head,
        headers={"Accept": accept},
    )
    return {"status": str(answer.status), **answer.headers}, answer.body


def _manifest_gets(registry: UpstreamRegistry, repository: str) -> list[str]:
    return [
        r.method
        for r in registry.requests()
        if r.is_manifest and r.repository == repository and r.method == "GET"
    ]


def test_head_is_answered_from_cache_and_a_moved_tag_is_noticed_by_head_revalidation(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    first = push_test_image(open_registry, layer_sizes=(1000,), seed=1)
    spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
    with Appliance(tmp_path / "appliance", [spec], upstream_ca=pki.ca_file) as appliance:
        url = f"https://{open_registry.name_port}/v2/{first.repository}/manifests/latest"
        headers, body = _curl(appliance, url, accept=OCI_MANIFEST)
        assert headers["status"] == "200", headers
        assert headers.get("docker-content-digest") == first.manifest_digest, headers
        assert "sha256:" + hashlib.sha256(body).hexdigest() == first.manifest_digest  # byte-exact
        open_registry.clear_requests()

        head, _ = _curl(appliance, url, accept=OCI_MANIFEST, head=True)
        assert head["status"] == "200" and head["docker-content-digest"] == first.manifest_digest
        assert head["content-length"] == str(len(body)) and head["content-type"] == OCI_MANIFEST
        _, again_body = _curl(appliance, url, accept=OCI_MANIFEST)
        assert again_body == body
        # Revalidation costs HEADs only: no upstream manifest GET for an unchanged tag.
        assert _manifest_gets(open_registry, first.repository) == []

        moved = push_test_image(open_registry, first.repository, layer_sizes=(2000,), seed=2)
        assert moved.manifest_digest != first.manifest_digest
        fresh, _ = _curl(appliance, url, accept=OCI_MANIFEST)
        assert fresh["docker-content-digest"] == moved.manifest_digest
        events = [e.split()[0] for e in appliance.events() if " manifest " in e and first.repository in e]
        assert events == ["MISS", "REVALIDATED", "REVALIDATED", "MISS"], events


def test_enabled_manifest_cache_serves_a_fresh_tag_without_asking_upstream(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(1000,))
    spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
    toml = {"manifest_cache": {"enabled": True, "default_ttl": "1h"}}
    with Appliance(tmp_path / "appliance", [spec], upstream_ca=pki.ca_file, extra_toml=toml) as appliance:
        url = f"https://{open_registry.name_port}/v2/{image.repository}/manifests/latest"
        _curl(appliance, url, accept=OCI_MANIFEST)
        open_registry.clear_requests()
        for _ in range(3):
            headers, _ = _curl(appliance, url, accept=OCI_MANIFEST)
            assert headers["docker-content-digest"] == image.manifest_digest
        assert [r for r in open_registry.requests() if r.is_manifest] == []


def test_an_index_is_never_served_to_a_client_that_asked_for_a_single_manifest_type(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(1000,), platforms=("linux/amd64", "linux/arm64"))
    spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
    with Appliance(tmp_path / "appliance", [spec], upstream_ca=pki.ca_file) as appliance:
        url = f"https://{open_registry.name_port}/v2/{image.repository}/manifests/latest"
        index, _ = _curl(appliance, url, accept=f"{OCI_INDEX}, {OCI_MANIFEST}")
        assert index["content-type"] == OCI_INDEX and index["docker-content-digest"] == image.manifest_digest
        single, _ = _curl(appliance, url, accept=OCI_MANIFEST)
        # distribution answers an index-only tag with 404 for a client that cannot take an index;
        # whatever it answers, the cached index must not be served in its place.
        assert single.get("content-type") != OCI_INDEX
        again, _ = _curl(appliance, url, accept=f"{OCI_INDEX}, {OCI_MANIFEST}")
        assert again["content-type"] == OCI_INDEX
