"""Issue 17.2 and 17.3 acceptance with real clients: identities on the proxy port (skopeo and podman
with ``user:password`` in the proxy URL) and on the mirror endpoint (a client certificate, a robot
token, the token flow), and refusals that reach the upstream not at all.

The appliance runs with ``[access] enabled``: alice has a password (a canary that must appear in no
log line), ``ci`` is a robot token, ``node`` has a client certificate from the client CA
(``appliance client-cert issue``), and the TLS listener serves the mirror.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.access import tokens
from appliance.access.passwords import hash_password
from appliance.front.mirror import path_segment
from tests.fixtures.appliance import ROOT, Appliance, UpstreamSpec
from tests.fixtures.clients import curl, podman_pull, skopeo_copy
from tests.fixtures.containerd import PrivateContainerd, ctr_pull, write_hosts_dir
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.process import free_port
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e

CANARY = "canary-pw-4f1d9a"


@dataclass
class Secured:
    appliance: Appliance
    registry: UpstreamRegistry
    image: ImageInfo
    tls_port: int
    robot: str
    node_certs: Path  # client.cert, client.key and the appliance's ca.crt

    def proxy(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.appliance.port}"

    @property
    def mirror_ref(self) -> str:
        """The image through the TLS listener, the registry named by a path prefix."""
        prefix = path_segment(self.registry.name_port)
        return f"127.0.0.1:{self.tls_port}/{prefix}/{self.image.repository}:{self.image.tag}"

    @property
    def mirror_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"


@pytest.fixture
def secured(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> Iterator[Secured]:
    image = push_test_image(open_registry, layer_sizes=(20_000, 10_000))
    robot = tokens.new_token()
    tls_port = free_port()
    access = {
        "enabled": True,
        "users": [{"name": "alice", "password_hash": hash_password(CANARY, log_n=10)}],
        "tokens": [{"name": "ci", "id": robot.token_id, "hash": robot.digest}],
        # Deny by default: these tests are about identities, so every identity may pull.
        "acl": [{"who": "*", "actions": ["pull", "push"]}],
    }
    appliance = Appliance(
        tmp_path / "appliance",
        [UpstreamSpec(open_registry.name_port, open_registry.host_port)],
        upstream_ca=pki.ca_file,
        extra_toml={"tls_listen": f"127.0.0.1:{tls_port}", "access": access, "cache": {"pull_ahead": 0}},
    )
    # The client CA must exist before the engine starts for its TLS listener to trust it.
    node_certs = tmp_path / "node-certs"
    issued = subprocess.run(
        [
            *(sys.executable, "-m", "appliance", "client-cert", "issue", "node"),
            *("--out", str(node_certs), "--config", str(appliance.config_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert issued.returncode == 0, issued.stderr
    with appliance:
        open_registry.clear_requests()
        yield Secured(appliance, open_registry, image, tls_port, robot.secret, node_certs)
        log = appliance.log_text()
        assert CANARY not in log
        assert robot.secret not in log


def test_skopeo_pulls_through_the_proxy_with_the_password_in_the_proxy_url(
    tmp_path: Path, secured: Secured
) -> None:
    result = skopeo_copy(
        f"docker://{secured.image.reference(secured.registry.name_port)}",
        f"dir:{tmp_path / 'out'}",
        https_proxy=secured.proxy(f"alice:{CANARY}"),
        cert_dir=secured.appliance.cert_dir(),
    ).check()
    assert result.digest == secured.image.manifest_digest


@pytest.mark.parametrize(
    "credentials", ["", "alice:wrong", f"mallory:{CANARY}"], ids=["none", "wrong", "unknown"]
)
def test_skopeo_without_the_right_proxy_credentials_is_told_what_to_set_and_nothing_goes_upstream(
    tmp_path: Path, secured: Secured, credentials: str
) -> None:
    result = skopeo_copy(
        f"docker://{secured.image.reference(secured.registry.name_port)}",
        f"dir:{tmp_path / 'out'}",
        https_proxy=secured.proxy(credentials),
        cert_dir=secured.appliance.cert_dir(),
        timeout=60,
    )
    assert not result.ok
    # Go prints the 407's reason phrase: it names the variable to set.
    assert "Proxy Authentication Required" in result.stderr
    assert f"HTTPS_PROXY=http://USER:PASSWORD@127.0.0.1:{secured.appliance.port}" in result.stderr
    assert secured.registry.requests() == []
    assert CANARY not in result.stderr


def test_podman_pulls_through_the_proxy_with_a_robot_token_as_the_password(
    tmp_path: Path, secured: Secured
) -> None:
    pulled = podman_pull(
        secured.image.reference(secured.registry.name_port),
        https_proxy=secured.proxy(f"ci:{secured.robot}"),
        ca_file=secured.appliance.cert_dir() / "ca.crt",
    ).check()
    assert pulled.digest == secured.image.manifest_digest


def test_the_mirror_without_credentials_answers_401_with_a_challenge_naming_its_token_realm(
    secured: Secured,
) -> None:
    ping = curl(f"{secured.mirror_url}/v2/", cacert=secured.node_certs / "ca.crt")
    assert ping.status == 401
    assert ping.headers["www-authenticate"].startswith(f'Bearer realm="{secured.mirror_url}/auth/token"')
    assert secured.registry.requests() == []


def test_the_mirror_serves_a_client_certificate_from_the_client_ca(tmp_path: Path, secured: Secured) -> None:
    certs = secured.node_certs
    ping = curl(
        f"{secured.mirror_url}/v2/",
        cacert=certs / "ca.crt",
        extra=["--cert", str(certs / "client.cert"), "--key", str(certs / "client.key")],
    )
    assert ping.status == 200, ping.stderr
    # skopeo (like Docker Engine and containerd) takes client.cert/client.key from its cert dir.
    pulled = skopeo_copy(f"docker://{secured.mirror_ref}", f"dir:{tmp_path / 'out'}", cert_dir=certs).check()
    assert pulled.digest == secured.image.manifest_digest


def test_the_mirror_serves_a_robot_token_as_a_bearer_token(secured: Secured) -> None:
    repository = f"{path_segment(secured.registry.name_port)}/{secured.image.repository}"
    answer = curl(
        f"{secured.mirror_url}/v2/{repository}/manifests/{secured.image.tag}",
        cacert=secured.node_certs / "ca.crt",
        headers={"Authorization": f"Bearer {secured.robot}", "Accept": secured.image.media_type},
    )
    assert answer.status == 200, answer.stderr
    assert answer.headers["docker-content-digest"] == secured.image.manifest_digest


@pytest.mark.parametrize("who", ["alice", "ci"])
def test_skopeo_logged_in_to_the_mirror_follows_the_token_flow(
    tmp_path: Path, secured: Secured, who: str
) -> None:
    secret = CANARY if who == "alice" else secured.robot
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "ca.crt").write_bytes((secured.node_certs / "ca.crt").read_bytes())
    pulled = skopeo_copy(
        f"docker://{secured.mirror_ref}", f"dir:{tmp_path / 'out'}", cert_dir=trust, creds=(who, secret)
    ).check()
    assert pulled.digest == secured.image.manifest_digest
    refused = skopeo_copy(f"docker://{secured.mirror_ref}", f"dir:{tmp_path / 'none'}", cert_dir=trust)
    assert not refused.ok
    assert "authentication required" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower()


def test_the_tls_listener_is_an_https_proxy_so_the_password_never_crosses_the_wire_in_clear(
    tmp_path: Path, secured: Secured
) -> None:
    trust = secured.appliance.cert_dir() / "ca.crt"
    proxy = f"https://alice:{CANARY}@127.0.0.1:{secured.tls_port}"
    manifest = (
        f"https://{secured.registry.name_port}/v2/{secured.image.repository}/manifests/{secured.image.tag}"
    )
    answer = curl(
        manifest,
        proxy=proxy,
        cacert=trust,
        headers={"Accept": secured.image.media_type},
        extra=["--proxy-cacert", str(trust)],
    )
    assert answer.status == 200, answer.stderr
    refused = curl(
        manifest,
        proxy=f"https://127.0.0.1:{secured.tls_port}",
        cacert=trust,
        extra=["--proxy-cacert", str(trust)],
    )
    assert "response 407" in refused.stderr
    # Go clients (skopeo here) speak TLS to an https:// proxy and CONNECT inside it.
    pulled = skopeo_copy(
        f"docker://{secured.image.reference(secured.registry.name_port)}",
        f"dir:{tmp_path / 'out'}",
        https_proxy=proxy,
        cert_dir=secured.appliance.cert_dir(),
    ).check()
    assert pulled.digest == secured.image.manifest_digest


def test_ctr_pulls_through_the_proxy_with_the_password_in_the_proxy_url(
    secured: Secured, private_containerd: PrivateContainerd
) -> None:
    trust = secured.appliance.cert_dir() / "ca.crt"
    reference = secured.image.reference(secured.registry.name_port)
    refused = ctr_pull(private_containerd, reference, ca_file=trust, https_proxy=secured.proxy(), timeout=60)
    assert not refused.ok
    assert "Proxy Authentication Required" in refused.stderr
    assert secured.registry.requests() == []
    result = ctr_pull(
        private_containerd, reference, ca_file=trust, https_proxy=secured.proxy(f"alice:{CANARY}")
    ).check()
    assert result.digest == secured.image.manifest_digest


def test_containerd_pulls_from_the_mirror_with_a_client_certificate_in_its_hosts_toml(
    tmp_path: Path, secured: Secured, private_containerd: PrivateContainerd
) -> None:
    certs = secured.node_certs
    reference = secured.image.reference(secured.registry.name_port)

    def hosts(directory: Path, client: bool) -> Path:
        pair = f'  client = [["{certs / "client.cert"}", "{certs / "client.key"}"]]\n' if client else ""
        content = (
            f'server = "https://{secured.registry.name_port}"\n\n'
            f'[host."{secured.mirror_url}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
            f'  ca = "{certs / "ca.crt"}"\n' + pair
        )
        return write_hosts_dir(directory, secured.registry.name_port, content)

    # Without the certificate the mirror answers 401 (and the made-up upstream name resolves nowhere).
    refused = ctr_pull(
        private_containerd, reference, hosts_dir=hosts(tmp_path / "none", client=False), timeout=60
    )
    assert not refused.ok
    result = ctr_pull(
        private_containerd, reference, hosts_dir=hosts(tmp_path / "certs.d", client=True)
    ).check()
    assert result.digest == secured.image.manifest_digest
    assert any(secured.image.repository in event for event in secured.appliance.events())
