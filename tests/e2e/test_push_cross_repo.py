"""Blobs are served per repository: a push gets the upstream's HEADs, a denied repository gets nothing.

A real distribution registry with token auth whose token server grants the appliance's account
(bob) ``pull`` on ``open/*`` only, skopeo through the appliance (MITM), and the registry's access
log to count what reached it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import ALICE, BOB
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import CurlResult, curl, skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import RegistryAuth, RegistryFactory, UpstreamRegistry
from tests.fixtures.tokenserver import Grant, TokenServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def grants_server(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Iterator[TokenServer]:
    """alice may pull and push everywhere; bob may pull ``open/*`` and nothing else."""
    server = TokenServer(
        tmp_path_factory.mktemp("links-token"),
        pki,
        users=dict([ALICE, BOB]),
        grants=[
            Grant(ALICE[0], "*", frozenset({"pull", "push"})),
            Grant(BOB[0], "open/*", frozenset({"pull"})),
        ],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def grants_registry(
    session_registry_factory: RegistryFactory, grants_server: TokenServer
) -> UpstreamRegistry:
    return session_registry_factory(auth=RegistryAuth.TOKEN, token=grants_server.settings(), creds=ALICE)


def _appliance(
    workdir: Path,
    pki: TestPKI,
    registry: UpstreamRegistry,
    server: TokenServer | None,
    creds: tuple[str, str] | None,
    *,
    allow_push: bool | None = None,
) -> Appliance:
    # The realm is on 127.0.0.1: only a realm the registry's config names receives credentials.
    realms = (f"127.0.0.1:{server.port}",) if server is not None else ()
    spec = UpstreamSpec(
        registry.name_port, registry.host_port, credentials=creds, auth_hosts=realms, allow_push=allow_push
    )
    return Appliance(workdir, [spec], upstream_ca=pki.ca_file)


def _pull(appliance: Appliance, registry: UpstreamRegistry, image: ImageInfo, dest: Path) -> None:
    skopeo_copy(
        f"docker://{image.reference(registry.name_port)}",
        f"dir:{dest}",
        https_proxy=appliance.url,
        cert_dir=appliance.cert_dir(),
    ).check()


def _blob(
    appliance: Appliance, registry: UpstreamRegistry, repository: str, digest: str, *, head: bool = False
) -> CurlResult:
    return curl(
        f"https://{registry.name_port}/v2/{repository}/blobs/{digest}",
        proxy=appliance.url,
        cacert=appliance.cert_dir() / "ca.crt",
        head=head,
    )


def _upstream_blob_requests(registry: UpstreamRegistry) -> list[str]:
    return [f"{r.method} {r.path}" for r in registry.requests() if r.is_blob]


def test_pushing_an_image_cached_under_another_repository_uploads_the_layers_the_target_lacks(
    tmp_path: Path,
    pki: TestPKI,
    grants_server: TokenServer,
    grants_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(grants_registry, "a/img", layer_sizes=(20_000, 30_000))
    name = grants_registry.name_port
    with _appliance(
        tmp_path / "appliance", pki, grants_registry, grants_server, ALICE, allow_push=True
    ) as app:
        _pull(app, grants_registry, image, tmp_path / "pulled")  # every blob now cached via a/img
        pushed = skopeo_copy(
            f"docker://{image.reference(name)}",
            f"docker://{name}/b/new:v1",
            https_proxy=app.url,
            cert_dir=app.cert_dir(),
        )
        assert pushed.ok, pushed.output
        assert pushed.digest == image.manifest_digest
    # b/new really holds the image upstream, layers and all.
    back = skopeo_copy(
        f"docker://{grants_registry.host_port}/b/new:v1",
        f"dir:{tmp_path / 'back'}",
        cert_dir=grants_registry.cert_dir,
        creds=ALICE,
    ).check()
    assert back.digest == image.manifest_digest


def test_a_blob_cached_via_one_repository_is_not_served_in_a_repository_the_upstream_denies(
    tmp_path: Path,
    pki: TestPKI,
    grants_server: TokenServer,
    grants_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(grants_registry, "open/img", layer_sizes=(20_000, 30_000))
    push_test_image(grants_registry, "secret/img", layer_sizes=(20_000, 30_000), seed=999)
    layer = image.layer_digests[0]
    with _appliance(tmp_path / "appliance", pki, grants_registry, grants_server, BOB) as app:
        _pull(app, grants_registry, image, tmp_path / "pulled")
        assert _blob(app, grants_registry, "open/img", layer).status == 200  # cached, linked
        for head in (False, True):
            denied = _blob(app, grants_registry, "secret/img", layer, head=head)
            # The upstream's answer to bob in secret/img (a challenge), not the cached bytes.
            assert denied.status == 401, (head, denied.status, denied.body[:200])
            assert "www-authenticate" in denied.headers
            assert layer.encode() not in denied.body and len(denied.body) < 20_000


def test_warm_pulls_and_pulls_of_the_same_image_in_another_repository_ask_upstream_for_no_blob(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    # A multi-arch image: the pull goes index -> child manifest by digest -> config and layers.
    platforms = ("linux/amd64", "linux/arm64")
    one = push_test_image(open_registry, "links/one", platforms=platforms, seed=7)
    two = push_test_image(open_registry, "links/two", platforms=platforms, seed=7)
    assert one.blob_digests == two.blob_digests
    with _appliance(tmp_path / "appliance", pki, open_registry, None, None) as app:
        _pull(app, open_registry, one, tmp_path / "cold")
        open_registry.clear_requests()
        _pull(app, open_registry, one, tmp_path / "warm")
        # links/two's index and child manifest come from links/two and list these very blobs.
        _pull(app, open_registry, two, tmp_path / "other")
        assert _upstream_blob_requests(open_registry) == []
        manifests = [r for r in open_registry.requests() if r.is_manifest]
        assert {r.repository for r in manifests} <= {"links/one", "links/two"}
        # A repository the upstream does not have gets its 404, not the blob cached via links/one.
        unknown = _blob(app, open_registry, "links/nothing", one.layer_digests[0])
        assert unknown.status == 404
        assert _upstream_blob_requests(open_registry) == [
            f"HEAD /v2/links/nothing/blobs/{one.layer_digests[0]}"
        ]


def test_an_unreachable_upstream_serves_linked_blobs_only(
    tmp_path: Path, pki: TestPKI, registry_factory: RegistryFactory, push_test_image: ImagePusher
) -> None:
    registry = registry_factory()
    image = push_test_image(registry, "links/offline", layer_sizes=(20_000,))
    with _appliance(tmp_path / "appliance", pki, registry, None, None) as app:
        _pull(app, registry, image, tmp_path / "cold")
        registry.stop()
        _pull(app, registry, image, tmp_path / "offline")  # tag STALE, blobs linked: still pullable
        layer = image.layer_digests[0]
        assert _blob(app, registry, "links/offline", layer).status == 200
        assert _blob(app, registry, "links/elsewhere", layer).status == 502
