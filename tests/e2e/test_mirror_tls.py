"""Issue 7: the optional TLS listener for mirror mode (https clients, no HTTPS_PROXY)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.front.mirror import path_segment
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import curl, skopeo_copy
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import REGISTRY_HOST, TestPKI
from tests.fixtures.process import free_port
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e


def test_tls_listener_serves_mirror_mode_with_a_certificate_from_the_appliance_ca(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(30_000,))
    tls_port = free_port()
    spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
    with Appliance(
        tmp_path / "appliance",
        [spec],
        upstream_ca=pki.ca_file,
        # Exact per-request accounting (a MISS per blob): pull-ahead has its own tests.
        extra_toml={"tls_listen": f"127.0.0.1:{tls_port}", "cache": {"pull_ahead": 0}},
    ) as appliance:
        trust = appliance.cert_dir()
        ping = curl(f"https://127.0.0.1:{tls_port}/v2/", cacert=trust / "ca.crt")
        assert ping.status == 200, ping.stderr
        # By name too: the certificate follows the name the client asked for (SNI).
        named = curl(
            f"https://mirror.lan:{tls_port}/ca.crt",
            cacert=trust / "ca.crt",
            extra=["--resolve", f"mirror.lan:{tls_port}:127.0.0.1"],
        )
        assert named.status == 200, named.stderr

        conf = tmp_path / "registries.conf"
        conf.write_text(
            'unqualified-search-registries = []\nshort-name-mode = "disabled"\n\n'
            f'[[registry]]\nprefix = "{open_registry.name_port}"\nlocation = "{open_registry.name_port}"\n'
            "[[registry.mirror]]\n"
            f'location = "127.0.0.1:{tls_port}/{path_segment(open_registry.name_port)}"\n'
        )
        for n in range(2):
            pulled = skopeo_copy(
                f"docker://{image.reference(open_registry.name_port)}",
                f"dir:{tmp_path / f'pull{n}'}",
                registries_conf=conf,
                cert_dir=trust,
            ).check()
            assert pulled.digest == image.manifest_digest
        statuses = [e.split()[0] for e in appliance.events() if " blob " in e and image.repository in e]
        assert statuses[: len(image.blob_digests)] == ["MISS"] * len(image.blob_digests)
        assert statuses[-len(image.blob_digests) :] == ["HIT"] * len(image.blob_digests)


def test_tls_listener_uses_the_users_own_certificate_when_given(tmp_path: Path, pki: TestPKI) -> None:
    tls_port = free_port()
    cert = pki.server(REGISTRY_HOST)
    toml = {
        "tls_listen": f"127.0.0.1:{tls_port}",
        "tls_cert_file": str(cert.cert_file),
        "tls_key_file": str(cert.key_file),
    }
    with Appliance(tmp_path / "appliance", extra_toml=toml):
        answer = curl(
            f"https://{REGISTRY_HOST}:{tls_port}/",
            cacert=pki.ca_file,
            extra=["--resolve", f"{REGISTRY_HOST}:{tls_port}:127.0.0.1"],
        )
        assert answer.status == 200, answer.stderr


def test_half_a_tls_pair_is_a_config_error(tmp_path: Path, pki: TestPKI) -> None:
    cert = pki.server(REGISTRY_HOST)
    appliance = Appliance(
        tmp_path / "appliance",
        extra_toml={"tls_listen": "127.0.0.1:5443", "tls_cert_file": str(cert.cert_file)},
    )
    with pytest.raises(RuntimeError) as info:
        appliance.start()
    assert "tls_cert_file and tls_key_file go together" in str(info.value)
