"""Issue 3 acceptance: token auth, podman, ctr, push, tunnels - real clients through the appliance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import ALICE, BOB
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import curl, podman_pull, skopeo_copy
from tests.fixtures.containerd import PrivateContainerd, ctr_pull
from tests.fixtures.images import ImagePusher, host_platform
from tests.fixtures.pki import TOKEN_HOST, TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tests.fixtures.tokenserver import TokenServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def htpasswd_appliance(
    tmp_path: Path, pki: TestPKI, htpasswd_registry: UpstreamRegistry
) -> Iterator[Appliance]:
    spec = UpstreamSpec(htpasswd_registry.name_port, htpasswd_registry.host_port, credentials=BOB)
    with Appliance(tmp_path / "appliance", [spec], upstream_ca=pki.ca_file) as appliance:
        yield appliance


def test_token_auth_registry_is_pulled_with_engine_held_credentials_and_cached_tokens(
    tmp_path: Path,
    pki: TestPKI,
    token_server: TokenServer,
    token_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(token_registry, layer_sizes=(30_000, 20_000, 10_000))
    # The realm is on 127.0.0.1: only a realm the registry's config names may receive credentials.
    realm = f"127.0.0.1:{token_server.port}"
    spec = UpstreamSpec(
        token_registry.name_port, token_registry.host_port, credentials=BOB, auth_hosts=(realm,)
    )
    with Appliance(tmp_path / "appliance", [spec], upstream_ca=pki.ca_file) as appliance:
        token_server.clear_counts()
        result = skopeo_copy(
            f"docker://{image.reference(token_registry.name_port)}",
            f"dir:{tmp_path / 'out'}",
            https_proxy=appliance.url,
            cert_dir=appliance.cert_dir(),
        ).check()
        assert result.digest == image.manifest_digest
        # One token per scope, reused for the manifest and every blob: not one per request.
        bob_tokens = token_server.token_requests(user=BOB[0])
        assert 1 <= bob_tokens <= 3, token_server.counts()
        assert token_server.refused == 0


def test_credentials_are_not_sent_to_a_realm_the_registry_config_does_not_name(
    tmp_path: Path,
    pki: TestPKI,
    token_server: TokenServer,
    token_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(token_registry, layer_sizes=(10_000,))
    spec = UpstreamSpec(token_registry.name_port, token_registry.host_port, credentials=BOB)
    with Appliance(tmp_path / "appliance", [spec], upstream_ca=pki.ca_file) as appliance:
        token_server.clear_counts()
        result = skopeo_copy(
            f"docker://{image.reference(token_registry.name_port)}",
            f"dir:{tmp_path / 'out'}",
            https_proxy=appliance.url,
            cert_dir=appliance.cert_dir(),
        )
        assert not result.ok
        assert token_server.token_requests(user=BOB[0]) == 0
        assert token_server.token_requests(user=None) >= 1
        assert BOB[1] not in appliance.log_text()


def test_podman_pulls_through_the_proxy_without_credentials(
    htpasswd_appliance: Appliance, htpasswd_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(htpasswd_registry)
    trust = htpasswd_appliance.cert_dir()
    pulled = podman_pull(
        image.reference(htpasswd_registry.name_port),
        ca_file=trust / "ca.crt",
        https_proxy=htpasswd_appliance.url,
    ).check()
    assert pulled.digest == image.manifest_digest
    assert pulled.image_id == image.config_digest.removeprefix("sha256:")
    assert "Writing manifest to image destination" in pulled.stderr


def test_ctr_pulls_through_the_proxy_without_credentials(
    htpasswd_appliance: Appliance,
    htpasswd_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
    private_containerd: PrivateContainerd,
) -> None:
    image = push_test_image(htpasswd_registry, platforms=("linux/amd64", "linux/arm64"))
    trust = htpasswd_appliance.cert_dir()
    result = ctr_pull(
        private_containerd,
        image.reference(htpasswd_registry.name_port),
        ca_file=trust / "ca.crt",
        https_proxy=htpasswd_appliance.url,
    ).check()
    assert result.digest == image.manifest_digest
    assert result.details["unpacked"].startswith(f"unpacking {host_platform()} {image.manifest_digest}")
    assert result.details["unpacked"].endswith("done")


def test_push_through_the_proxy_is_refused_with_405_unless_allowed(
    tmp_path: Path,
    pki: TestPKI,
    htpasswd_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    source = push_test_image(htpasswd_registry, layer_sizes=(50_000, 40_000))
    local = tmp_path / "local"
    skopeo_copy(
        f"docker://{source.reference(htpasswd_registry.host_port)}",
        f"dir:{local}",
        cert_dir=htpasswd_registry.cert_dir,
        creds=ALICE,
    ).check()
    name = htpasswd_registry.name_port
    denied_spec = UpstreamSpec(name, htpasswd_registry.host_port, credentials=ALICE)
    with Appliance(tmp_path / "denied", [denied_spec], upstream_ca=pki.ca_file) as appliance:
        refused = skopeo_copy(
            f"dir:{local}",
            f"docker://{name}/pushed/denied:v1",
            https_proxy=appliance.url,
            cert_dir=appliance.cert_dir(),
        )
        assert not refused.ok
        assert "ALLOW_PUSH" in refused.stderr or "405" in refused.stderr, refused.stderr
    allowed_spec = UpstreamSpec(name, htpasswd_registry.host_port, credentials=ALICE, allow_push=True)
    with Appliance(tmp_path / "allowed", [allowed_spec], upstream_ca=pki.ca_file) as appliance:
        pushed = skopeo_copy(
            f"dir:{local}",
            f"docker://{name}/pushed/allowed:v1",
            https_proxy=appliance.url,
            cert_dir=appliance.cert_dir(),
        ).check()
        assert pushed.digest == source.manifest_digest
    # The pushed image is really upstream: read it back directly.
    back = skopeo_copy(
        f"docker://{htpasswd_registry.host_port}/pushed/allowed:v1",
        f"dir:{tmp_path / 'back'}",
        cert_dir=htpasswd_registry.cert_dir,
        creds=ALICE,
    ).check()
    assert back.digest == source.manifest_digest


def test_curl_tunnel_to_a_non_intercepted_loopback_host_is_refused_by_default_and_allowed_with_tunnel_all(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry
) -> None:
    # The upstream registry's own name is not configured: a CONNECT to it is a blind tunnel.
    target = f"https://{open_registry.host_port}/v2/"
    with Appliance(tmp_path / "default") as appliance:
        refused = curl(target, proxy=appliance.url, cacert=pki.ca_file)
        assert refused.returncode != 0
        assert "403" in refused.stderr, refused.stderr
    with Appliance(tmp_path / "all", extra_toml={"tunnel": {"mode": "all"}}) as appliance:
        tunnelled = curl(target, proxy=appliance.url, cacert=pki.ca_file)
        assert tunnelled.returncode == 0, tunnelled.stderr
        assert tunnelled.status == 200


def test_token_realm_requests_get_seed_style_credentials_chosen_by_repository_scope(
    tmp_path: Path, pki: TestPKI, token_server: TokenServer, token_registry: UpstreamRegistry
) -> None:
    realm = f"{TOKEN_HOST}:{token_server.port}"
    spec = UpstreamSpec(
        token_registry.name_port, token_registry.host_port, credentials=BOB, auth_hosts=(realm,)
    )
    # A second account for one repository prefix wins over the host-wide one (the seed's TODO).
    prefixed = {"scope": f"{token_registry.name_port}/team-a", "username": ALICE[0], "password": ALICE[1]}
    with Appliance(
        tmp_path / "appliance",
        [spec],
        upstream_ca=pki.ca_file,
        extra_resolve=[f"{realm}=127.0.0.1:{token_server.port}"],
        extra_credentials=[prefixed],
    ) as appliance:
        ca = appliance.cert_dir() / "ca.crt"
        token_server.clear_counts()
        for repo in ("team-a/app", "other/app"):
            url = f"https://{realm}/token?service=registry.test&scope=repository:{repo}:pull"
            answer = curl(url, proxy=appliance.url, cacert=ca)
            assert answer.status == 200, answer.stderr
        assert token_server.token_requests(user=ALICE[0]) == 1
        assert token_server.token_requests(user=BOB[0]) == 1
        assert BOB[1] not in appliance.log_text() and ALICE[1] not in appliance.log_text()


def test_plain_http_lab_registry_is_served_through_absolute_uri_requests_and_cached(
    tmp_path: Path, plain_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(plain_registry, layer_sizes=(20_000,))
    spec = UpstreamSpec(plain_registry.name_port, plain_registry.host_port, scheme="http")
    with Appliance(tmp_path / "appliance", [spec]) as appliance:
        url = f"http://{plain_registry.name_port}/v2/{image.repository}/blobs/{image.layer_digests[0]}"
        for _ in range(2):
            got = curl(url, proxy=appliance.url)
            assert got.status == 200, got.stderr
        blob_events = [e.split()[0] for e in appliance.events() if " blob " in e]
        assert blob_events == ["MISS", "HIT"], blob_events
        # A registry that is not configured as plain HTTP is not forwarded: no open HTTP proxy.
        other = curl(f"http://{plain_registry.host_port}/v2/", proxy=appliance.url)
        assert other.status == 403
