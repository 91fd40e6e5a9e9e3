"""The e2e fixtures work on their own: real clients pull from real registries, no appliance between.

These tests are the ground every appliance e2e test stands on: if one fails, the fixture is broken,
not the engine.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import ALICE, BOB, PUBLIC_PREFIX
from tests.fixtures.clients import podman_pull, skopeo_copy, skopeo_inspect_raw
from tests.fixtures.connectproxy import ConnectProxy
from tests.fixtures.containerd import PrivateContainerd, ctr_pull
from tests.fixtures.images import ImagePusher, host_platform
from tests.fixtures.pki import REGISTRY_HOST, TestPKI
from tests.fixtures.registry import RegistryAuth, RegistryFactory, UpstreamRegistry
from tests.fixtures.tokenserver import TokenServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def connect_proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy(resolve={REGISTRY_HOST: "127.0.0.1"}) as proxy:
        yield proxy


def _copied_blobs(directory: Path) -> set[str]:
    return {f"sha256:{path.name}" for path in directory.iterdir() if len(path.name) == 64}


def test_skopeo_copies_from_htpasswd_registry_with_credentials_and_digests_match(
    htpasswd_registry: UpstreamRegistry, push_test_image: ImagePusher, tmp_path: Path
) -> None:
    image = push_test_image(htpasswd_registry, layer_sizes=(3000, 5000, 7000))
    htpasswd_registry.clear_requests()

    result = skopeo_copy(
        f"docker://{image.reference(htpasswd_registry.host_port)}",
        f"dir:{tmp_path / 'copy'}",
        cert_dir=htpasswd_registry.cert_dir,
        creds=BOB,
    ).check()

    assert result.digest == image.manifest_digest
    assert _copied_blobs(tmp_path / "copy") == set(image.blob_digests)
    # The upstream's own log shows one GET per blob: the ground truth for cache-hit assertions.
    served = sorted(
        record.path.rsplit("/", 1)[1] for record in htpasswd_registry.blob_requests(image.repository)
    )
    assert served == sorted(image.blob_digests)
    assert all(record.status == 200 for record in htpasswd_registry.blob_requests(image.repository))
    assert sum(r.size for r in htpasswd_registry.blob_requests(image.repository)) == image.total_size
    assert "alice" not in result.output and ALICE[1] not in result.output and BOB[1] not in result.output


def test_htpasswd_registry_refuses_a_client_without_credentials(
    htpasswd_registry: UpstreamRegistry, push_test_image: ImagePusher, tmp_path: Path
) -> None:
    image = push_test_image(htpasswd_registry)

    result = skopeo_copy(
        f"docker://{image.reference(htpasswd_registry.host_port)}",
        f"dir:{tmp_path / 'copy'}",
        cert_dir=htpasswd_registry.cert_dir,
    )

    assert not result.ok
    assert "authentication required" in result.stderr
    assert any(r.status == 401 and r.repository == image.repository for r in htpasswd_registry.requests())


def test_token_registry_serves_a_client_with_credentials_and_counts_its_tokens(
    token_registry: UpstreamRegistry, token_server: TokenServer, push_test_image: ImagePusher, tmp_path: Path
) -> None:
    image = push_test_image(token_registry)
    scope = f"repository:{image.repository}:pull"
    assert token_server.token_requests("bob", scope) == 0

    result = skopeo_copy(
        f"docker://{image.reference(token_registry.host_port)}",
        f"dir:{tmp_path / 'copy'}",
        cert_dir=token_registry.cert_dir,
        creds=BOB,
    ).check()

    assert result.digest == image.manifest_digest
    assert _copied_blobs(tmp_path / "copy") == set(image.blob_digests)
    assert token_server.token_requests("bob", scope) >= 1
    assert token_server.token_requests(None, scope) == 0


def test_token_registry_denies_anonymous_pulls_of_private_repositories_but_not_public_ones(
    token_registry: UpstreamRegistry, token_server: TokenServer, push_test_image: ImagePusher, tmp_path: Path
) -> None:
    private = push_test_image(token_registry)
    public = push_test_image(token_registry, f"{PUBLIC_PREFIX}fixtures-check")

    denied = skopeo_copy(
        f"docker://{private.reference(token_registry.host_port)}",
        f"dir:{tmp_path / 'private'}",
        cert_dir=token_registry.cert_dir,
    )
    allowed = skopeo_copy(
        f"docker://{public.reference(token_registry.host_port)}",
        f"dir:{tmp_path / 'public'}",
        cert_dir=token_registry.cert_dir,
    ).check()

    assert not denied.ok
    assert "denied" in denied.stderr or "authentication required" in denied.stderr
    assert token_server.token_requests(None, f"repository:{private.repository}:pull") >= 1
    assert allowed.digest == public.manifest_digest


def test_token_server_refuses_a_wrong_password(
    token_registry: UpstreamRegistry, token_server: TokenServer, push_test_image: ImagePusher, tmp_path: Path
) -> None:
    image = push_test_image(token_registry)
    refused_before = token_server.refused

    result = skopeo_copy(
        f"docker://{image.reference(token_registry.host_port)}",
        f"dir:{tmp_path / 'copy'}",
        cert_dir=token_registry.cert_dir,
        creds=(BOB[0], "not-the-password"),
    )

    assert not result.ok
    assert "invalid username or password" in result.stderr
    assert token_server.refused > refused_before


@pytest.mark.parametrize("header", ["kid", "x5c"])
def test_distribution_accepts_tokens_signed_with_kid_or_x5c_headers(
    header: str,
    token_registry: UpstreamRegistry,
    token_server: TokenServer,
    push_test_image: ImagePusher,
    pki: TestPKI,
) -> None:
    image = push_test_image(token_registry)
    access: list[dict[str, object]] = [{"type": "repository", "name": image.repository, "actions": ["pull"]}]
    original = token_server.header
    token_server.header = header  # type: ignore[assignment]
    try:
        token = token_server.issue("bob", access)
    finally:
        token_server.header = original
    request = urllib.request.Request(
        f"{token_registry.url}/v2/{image.repository}/manifests/{image.tag}",
        headers={"Authorization": f"Bearer {token}", "Accept": image.media_type},
    )

    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=pki.ca_file)) as response:
        assert response.headers["Docker-Content-Digest"] == image.manifest_digest

    expired = token_server.issue("bob", access, ttl=-300)
    request.headers["Authorization"] = f"Bearer {expired}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=ssl.create_default_context(cafile=pki.ca_file))
    assert refused.value.code == 401


def test_podman_pulls_directly_trusting_the_test_ca_through_cert_dir(
    htpasswd_registry: UpstreamRegistry, push_test_image: ImagePusher, pki: TestPKI
) -> None:
    image = push_test_image(htpasswd_registry)
    ref = image.reference(htpasswd_registry.host_port)

    untrusted = podman_pull(ref, creds=BOB)
    pulled = podman_pull(ref, ca_file=pki.ca_file, creds=BOB).check()

    assert not untrusted.ok
    assert "certificate" in untrusted.stderr
    assert pulled.image_id == image.config_digest.removeprefix("sha256:")
    assert pulled.digest == image.manifest_digest
    assert "Writing manifest to image destination" in pulled.stderr


def test_ctr_pulls_a_multi_platform_image_into_a_private_containerd(
    htpasswd_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
    private_containerd: PrivateContainerd,
    pki: TestPKI,
) -> None:
    image = push_test_image(htpasswd_registry, platforms=("linux/amd64", "linux/arm64"))
    ref = image.reference(htpasswd_registry.host_port)
    htpasswd_registry.clear_requests()

    result = ctr_pull(private_containerd, ref, ca_file=pki.ca_file, creds=BOB).check()

    assert result.digest == image.manifest_digest
    # ctr names the index it resolved and the platform it unpacked from it.
    assert result.details["unpacked"].startswith(f"unpacking {host_platform()} {image.manifest_digest}")
    assert result.details["unpacked"].endswith("done")
    mine = next(p for p in image.platforms if p.platform == host_platform())
    assert image.layer_digests == mine.layer_digests
    fetched = {record.path.rsplit("/", 1)[1] for record in htpasswd_registry.blob_requests(image.repository)}
    assert fetched == set(image.blob_digests)  # this platform's blobs only
    assert BOB[1] not in result.output


def test_registry_restart_keeps_its_port_and_its_images(
    registry_factory: RegistryFactory, push_test_image: ImagePusher, tmp_path: Path
) -> None:
    registry = registry_factory(auth=RegistryAuth.HTPASSWD, users=dict([ALICE]))
    image = push_test_image(registry)
    port = registry.port

    registry.stop()
    while_down = skopeo_inspect_raw(
        f"docker://{image.reference(registry.host_port)}", cert_dir=registry.cert_dir, creds=ALICE, timeout=30
    )
    registry.start()
    after = skopeo_copy(
        f"docker://{image.reference(registry.host_port)}",
        f"dir:{tmp_path / 'copy'}",
        cert_dir=registry.cert_dir,
        creds=ALICE,
    ).check()

    assert not while_down.ok
    assert "connection refused" in while_down.stderr
    assert registry.port == port
    assert after.digest == image.manifest_digest


def test_plain_http_registry_serves_docker_media_types_byte_exact(
    plain_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(plain_registry, media="docker", platforms=("linux/amd64", "linux/arm64"))

    raw = skopeo_inspect_raw(
        f"docker://{image.reference(plain_registry.host_port)}", tls_verify=False
    ).check()

    manifest = json.loads(raw.stdout)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert {m["digest"] for m in manifest["manifests"]} == {p.manifest_digest for p in image.platforms}
    assert plain_registry.url.startswith("http://")


def test_clients_reach_a_made_up_registry_name_through_https_proxy(
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
    connect_proxy: ConnectProxy,
    private_containerd: PrivateContainerd,
    pki: TestPKI,
    tmp_path: Path,
) -> None:
    image = push_test_image(open_registry)
    ref = image.reference(open_registry.name_port)  # registry.test:PORT: only the proxy can resolve it
    connect_proxy.clear()

    copied = skopeo_copy(
        f"docker://{ref}",
        f"dir:{tmp_path / 'copy'}",
        cert_dir=open_registry.cert_dir,
        https_proxy=connect_proxy.url,
    ).check()
    pulled = podman_pull(ref, ca_file=pki.ca_file, https_proxy=connect_proxy.url).check()
    fetched = ctr_pull(private_containerd, ref, ca_file=pki.ca_file, https_proxy=connect_proxy.url).check()

    assert copied.digest == pulled.digest == fetched.digest == image.manifest_digest
    assert set(connect_proxy.connects()) == {open_registry.name_port}
    assert len(connect_proxy.connects()) >= 3
