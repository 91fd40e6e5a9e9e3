"""Issue 7 acceptance: the appliance as a registry mirror, one plain-HTTP address for every registry.

Clients talk to ``127.0.0.1:APPLIANCE_PORT`` directly (no proxy, no CA); the upstream registries keep
their made-up ``registry.test:PORT`` names, which only the appliance can reach (its ``resolve``
overrides), so a client falling back to the registry itself fails: a success proves the mirror.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.config.model import RegistryConfig
from appliance.front.mirror import path_segment
from appliance.front.setup_scripts import containerd_hosts
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import podman_pull, skopeo_copy
from tests.fixtures.containerd import PrivateContainerd, ctr_pull
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e

OCI_ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def _request(
    appliance: Appliance, method: str, path: str, headers: Mapping[str, str] | None = None
) -> Answer:
    """One plain-HTTP request straight to the appliance, as a mirror client makes it."""
    connection = http.client.HTTPConnection("127.0.0.1", appliance.port, timeout=30)
    try:
        connection.request(method, path, headers=dict(headers or {}))
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def _upstream_blob(registry: UpstreamRegistry, repository: str, digest: str) -> bytes:
    context = ssl.create_default_context(cafile=str(registry.ca_file))
    url = f"{registry.url}/v2/{repository}/blobs/{digest}"
    with urllib.request.urlopen(url, timeout=30, context=context) as answer:
        data: bytes = answer.read()
        return data


def _blob_files(directory: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in directory.iterdir() if len(p.name) == 64}


@pytest.fixture
def appliance(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, htpasswd_registry: UpstreamRegistry
) -> Iterator[Appliance]:
    specs = [
        UpstreamSpec(open_registry.name_port, open_registry.host_port),
        UpstreamSpec(
            htpasswd_registry.name_port, htpasswd_registry.host_port, credentials=htpasswd_registry.creds
        ),
    ]
    # Exact per-request accounting (a MISS per blob on first pull): pull-ahead has its own tests.
    no_pull_ahead = {"cache": {"pull_ahead": 0}}
    with Appliance(
        tmp_path / "appliance", specs, upstream_ca=pki.ca_file, extra_toml=no_pull_ahead
    ) as running:
        yield running


def _served_registries_conf(appliance: Appliance, directory: Path) -> Path:
    """The appliance's own ``/setup/podman`` answer, saved as the client's only registries.conf."""
    text = appliance.get("/setup/podman").decode()
    path = directory / "registries.conf"
    path.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n\n' + text)
    return path


def _mirror_pull(image: ImageInfo, registry: UpstreamRegistry, conf: Path, dest: Path) -> None:
    source = f"docker://{image.reference(registry.name_port)}"
    result = skopeo_copy(source, f"dir:{dest}", registries_conf=conf).check()
    assert result.digest == image.manifest_digest
    assert _blob_files(dest) >= set(image.blob_digests)


def test_served_podman_config_mirrors_each_registry_under_the_address_the_client_used(
    appliance: Appliance, open_registry: UpstreamRegistry
) -> None:
    conf = tomllib.loads(appliance.get("/setup/podman").decode())
    mirrors = {entry["prefix"]: entry["mirror"][0]["location"] for entry in conf["registry"]}
    expected = f"127.0.0.1:{appliance.port}/{path_segment(open_registry.name_port)}"
    assert mirrors[open_registry.name_port] == expected
    hosts = appliance.get("/setup/containerd").decode()
    assert f'[host."http://127.0.0.1:{appliance.port}"]' in hosts
    assert json.loads(appliance.get("/setup/docker")) == {
        "registry-mirrors": [f"http://127.0.0.1:{appliance.port}"]
    }
    via_name = _request(appliance, "GET", "/setup/docker", {"Host": "cache.lan:3128"})
    assert json.loads(via_name.body) == {"registry-mirrors": ["http://cache.lan:3128"]}
    assert _request(appliance, "GET", "/setup/nothing").status == 404
    # The Host header is pasted into shell and TOML: anything but HOST:PORT is refused.
    assert _request(appliance, "GET", "/setup/containerd", {"Host": "x'$(reboot)"}).status == 400


def test_skopeo_pulls_two_registries_through_one_mirror_address_and_second_pulls_are_all_hits(
    tmp_path: Path,
    appliance: Appliance,
    open_registry: UpstreamRegistry,
    htpasswd_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    first_image = push_test_image(open_registry, layer_sizes=(30_000, 20_000))
    second_image = push_test_image(htpasswd_registry, layer_sizes=(25_000, 15_000))
    conf = _served_registries_conf(appliance, tmp_path)
    open_registry.clear_requests()
    htpasswd_registry.clear_requests()

    _mirror_pull(first_image, open_registry, conf, tmp_path / "a1")
    _mirror_pull(second_image, htpasswd_registry, conf, tmp_path / "b1")
    assert {r.path.rsplit("/", 1)[1] for r in open_registry.blob_requests(first_image.repository)} >= set(
        first_image.layer_digests
    )
    assert htpasswd_registry.blob_requests(second_image.repository)

    open_registry.clear_requests()
    htpasswd_registry.clear_requests()
    _mirror_pull(first_image, open_registry, conf, tmp_path / "a2")
    _mirror_pull(second_image, htpasswd_registry, conf, tmp_path / "b2")
    assert open_registry.blob_requests(first_image.repository) == []
    assert htpasswd_registry.blob_requests(second_image.repository) == []
    events = appliance.events()
    for image in (first_image, second_image):
        blob_events = [e for e in events if " blob " in e and image.repository in e]
        assert sum(e.startswith("HIT") for e in blob_events) >= len(image.blob_digests), events


def test_ns_and_path_prefix_route_the_same_repository_name_to_the_right_registry(
    appliance: Appliance,
    open_registry: UpstreamRegistry,
    htpasswd_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    repository = "test/mirror-same-name"
    in_open = push_test_image(open_registry, repository, seed=1)
    in_htpasswd = push_test_image(htpasswd_registry, repository, seed=2)
    assert in_open.manifest_digest != in_htpasswd.manifest_digest
    accept = {"Accept": OCI_ACCEPT}
    manifest = f"/v2/{repository}/manifests/latest"
    paths = {
        in_open.manifest_digest: [
            f"{manifest}?ns={open_registry.name_port}",
            f"/v2/{open_registry.name_port}/{repository}/manifests/latest",
        ],
        in_htpasswd.manifest_digest: [
            f"{manifest}?ns={htpasswd_registry.name_port}",
            f"/v2/{path_segment(htpasswd_registry.name_port)}/{repository}/manifests/latest",
        ],
    }
    for digest, requests in paths.items():
        for path in requests:
            answer = _request(appliance, "GET", path, accept)
            assert answer.status == 200, (path, answer.body)
            assert answer.headers["Docker-Content-Digest"] == digest, path
            assert "sha256:" + hashlib.sha256(answer.body).hexdigest() == digest, path


def test_unconfigured_registry_gets_a_fast_404_with_an_oci_error_body(appliance: Appliance) -> None:
    for path in (
        "/v2/team/app/manifests/latest?ns=unknown.example:5000",
        "/v2/unknown.example/team/app/manifests/latest",
        "/v2/unknown.example_5000/team/app/blobs/sha256:" + "0" * 64,
    ):
        started = time.monotonic()
        answer = _request(appliance, "GET", path)
        assert time.monotonic() - started < 1.0, path
        assert answer.status == 404, path
        assert answer.headers["Content-Type"].startswith("application/json")
        errors = json.loads(answer.body)["errors"]
        assert errors[0]["code"] == "NAME_UNKNOWN"
        assert "unknown.example" in errors[0]["message"]


def test_bare_ping_is_answered_by_the_appliance(appliance: Appliance) -> None:
    answer = _request(appliance, "GET", "/v2/")
    assert answer.status == 200
    assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_mirror_and_mitm_share_one_cache_in_both_directions(
    tmp_path: Path, appliance: Appliance, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    via_proxy_first = push_test_image(open_registry, layer_sizes=(22_000,))
    via_mirror_first = push_test_image(open_registry, layer_sizes=(23_000,))
    conf = _served_registries_conf(appliance, tmp_path)
    trust = appliance.cert_dir()

    def proxy_pull(image: ImageInfo, dest: Path) -> None:
        result = skopeo_copy(
            f"docker://{image.reference(open_registry.name_port)}",
            f"dir:{dest}",
            https_proxy=appliance.url,
            cert_dir=trust,
        ).check()
        assert result.digest == image.manifest_digest

    proxy_pull(via_proxy_first, tmp_path / "p1")
    _mirror_pull(via_mirror_first, open_registry, conf, tmp_path / "m1")
    open_registry.clear_requests()

    _mirror_pull(via_proxy_first, open_registry, conf, tmp_path / "m2")
    proxy_pull(via_mirror_first, tmp_path / "p2")
    assert open_registry.blob_requests(via_proxy_first.repository) == []
    assert open_registry.blob_requests(via_mirror_first.repository) == []
    events = appliance.events()
    for image in (via_proxy_first, via_mirror_first):
        blob_events = [e for e in events if " blob " in e and image.repository in e]
        assert sum(e.startswith("MISS") for e in blob_events) == len(image.blob_digests), events
        assert sum(e.startswith("HIT") for e in blob_events) >= len(image.blob_digests), events


def test_head_manifest_carries_digest_and_length_cold_and_cached(
    appliance: Appliance, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry)
    accept = {"Accept": OCI_ACCEPT}
    ns = f"?ns={open_registry.name_port}"
    by_tag = f"/v2/{image.repository}/manifests/{image.tag}{ns}"
    by_digest = f"/v2/{image.repository}/manifests/{image.manifest_digest}{ns}"

    cold = _request(appliance, "HEAD", by_tag, accept)
    body = _request(appliance, "GET", by_tag, accept).body
    cached = _request(appliance, "HEAD", by_digest, accept)
    for answer in (cold, cached):
        assert answer.status == 200
        assert answer.body == b""
        assert answer.headers["Docker-Content-Digest"] == image.manifest_digest
        assert answer.headers["Content-Length"] == str(len(body))
    assert "sha256:" + hashlib.sha256(body).hexdigest() == image.manifest_digest


def test_blob_range_requests_return_206_with_the_exact_bytes_cold_and_cached(
    appliance: Appliance, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(50_000,))
    digest = image.layer_digests[0]
    whole = _upstream_blob(open_registry, image.repository, digest)
    path = f"/v2/{image.repository}/blobs/{digest}?ns={open_registry.name_port}"

    for attempt in ("cold", "cached"):
        answer = _request(appliance, "GET", path, {"Range": "bytes=100-4195"})
        assert answer.status == 206, (attempt, answer.body[:200])
        assert answer.body == whole[100:4196], attempt
        assert answer.headers["Content-Range"] == f"bytes 100-4195/{len(whole)}", attempt
    tail = _request(appliance, "GET", path, {"Range": f"bytes={len(whole) - 10}-"})
    assert tail.status == 206
    assert tail.body == whole[-10:]
    full = _request(appliance, "GET", path)
    assert full.status == 200
    assert full.body == whole  # never re-encoded
    assert appliance.events()


def test_ctr_pulls_through_the_generated_hosts_toml(
    tmp_path: Path,
    appliance: Appliance,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
    private_containerd: PrivateContainerd,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(12_000, 8_000))
    hosts_dir = tmp_path / "certs.d"
    registries = [RegistryConfig(host=open_registry.name_port)]
    for setup_file in containerd_hosts(f"127.0.0.1:{appliance.port}", registries):
        (hosts_dir / setup_file.path).parent.mkdir(parents=True, exist_ok=True)
        (hosts_dir / setup_file.path).write_text(setup_file.content)
    open_registry.clear_requests()

    result = ctr_pull(private_containerd, image.reference(open_registry.name_port), hosts_dir=hosts_dir)
    result.check()
    assert result.digest == image.manifest_digest
    assert result.details["unpacked"].endswith("done")
    # The appliance fetched the layers for containerd, which never reached the upstream itself.
    fetched = {r.path.rsplit("/", 1)[1] for r in open_registry.blob_requests(image.repository)}
    assert fetched >= set(image.layer_digests)
    events = [e for e in appliance.events() if image.repository in e and " blob " in e]
    assert len(events) >= len(image.layer_digests), appliance.events()


def test_podman_pulls_through_the_served_registries_conf(
    tmp_path: Path, appliance: Appliance, htpasswd_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(htpasswd_registry, layer_sizes=(9_000,))
    conf = _served_registries_conf(appliance, tmp_path)
    htpasswd_registry.clear_requests()

    result = podman_pull(image.reference(htpasswd_registry.name_port), registries_conf=conf)
    result.check()
    assert result.digest == image.manifest_digest
    fetched = {r.path.rsplit("/", 1)[1] for r in htpasswd_registry.blob_requests(image.repository)}
    assert fetched >= set(image.layer_digests)
