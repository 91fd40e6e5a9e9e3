"""Issue 17 (item 6): a CA that vouches only for registries, checked by real curl, skopeo and OpenSSL."""

from __future__ import annotations

import asyncio
import http.client
import re
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509

from appliance.config.model import Config, RegistryConfig
from appliance.control.client import ControlClient
from appliance.front.ca import CertificateAuthority
from appliance.front.intermediate import intercepted_names, issue_intermediate
from appliance.front.leaf_certs import LeafCertificates
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import CurlResult, curl, skopeo_copy, skopeo_inspect_raw
from tests.fixtures.connectproxy import ConnectProxy
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import OTHER_HOST, REGISTRY_HOST, TestPKI
from tests.fixtures.process import free_port, require_binary
from tests.fixtures.registry import RegistryFactory, UpstreamRegistry

pytestmark = pytest.mark.e2e

OUTSIDE = "outside.test"


class NameServer:
    """A TLS server on loopback presenting, per SNI name, a leaf the product mints from ``issuer``.

    Answers ``/v2/`` with 200 and anything else with 404, and records the ``Host`` of each request:
    a request recorded means the client accepted the certificate.
    """

    def __init__(self, leaves: LeafCertificates) -> None:
        self.leaves = leaves
        self.port = free_port()
        self.hosts: list[str] = []

    async def _handle(self, request: web.Request) -> web.Response:
        self.hosts.append(request.host.rsplit(":", 1)[0])
        if request.path == "/v2/":
            return web.json_response({})
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "none"}]}, status=404)

    async def __aenter__(self) -> NameServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        context = await asyncio.to_thread(self.leaves.sni_server_context, REGISTRY_HOST)
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def constrained_server(tmp_path: Path) -> AsyncIterator[tuple[NameServer, Path]]:
    """The product's root, its intermediate for ``registry.test`` only, and a server minting from it."""
    root = await asyncio.to_thread(
        CertificateAuthority.load_or_create, tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "ca.key"
    )
    names = intercepted_names(Config(registries=(RegistryConfig(host=REGISTRY_HOST),)))
    trust = tmp_path / "trust"  # what clients trust: the root alone, as served at /ca.crt
    trust.mkdir()
    (trust / "ca.crt").write_bytes(root.cert_pem)
    async with NameServer(LeafCertificates(issue_intermediate(root, names))) as server:
        yield server, trust


async def test_curl_rejects_a_leaf_outside_the_registries_and_accepts_one_inside(
    constrained_server: tuple[NameServer, Path],
) -> None:
    server, trust = constrained_server
    port = server.port

    def fetch(name: str) -> CurlResult:
        return curl(
            f"https://{name}:{port}/v2/",
            cacert=trust / "ca.crt",
            extra=["--resolve", f"{name}:{port}:127.0.0.1"],
        )

    outside = await asyncio.to_thread(fetch, OUTSIDE)
    assert outside.returncode == 60, outside.stderr
    assert "subtree violation" in outside.stderr
    inside = await asyncio.to_thread(fetch, REGISTRY_HOST)
    assert inside.status == 200, inside.stderr
    assert server.hosts == [REGISTRY_HOST]


async def test_skopeo_rejects_a_leaf_outside_the_registries_and_accepts_one_inside(
    constrained_server: tuple[NameServer, Path],
) -> None:
    server, trust = constrained_server
    # Go never proxies loopback names: made-up names through a CONNECT proxy that maps them back.
    with ConnectProxy({OUTSIDE: "127.0.0.1", REGISTRY_HOST: "127.0.0.1"}) as proxy:
        outside = await asyncio.to_thread(
            skopeo_inspect_raw,
            f"docker://{OUTSIDE}:{server.port}/library/app:1",
            cert_dir=trust,
            https_proxy=proxy.url,
        )
        inside = await asyncio.to_thread(
            skopeo_inspect_raw,
            f"docker://{REGISTRY_HOST}:{server.port}/library/app:1",
            cert_dir=trust,
            https_proxy=proxy.url,
        )
    assert not outside.ok
    assert "not authorized to sign for this name" in outside.stderr, outside.stderr
    assert "is not permitted by any constraint" in outside.stderr and OUTSIDE in outside.stderr
    assert "x509" not in inside.stderr, inside.stderr  # it got as far as the (absent) manifest
    assert server.hosts and set(server.hosts) == {REGISTRY_HOST}


def _served_chain(appliance: Appliance, target: str) -> list[x509.Certificate]:
    """The chain the appliance presents inside ``CONNECT target``, as real ``openssl s_client`` sees it."""
    openssl = require_binary("openssl")
    host = target.rsplit(":", 1)[0]
    done = subprocess.run(
        [openssl, "s_client", "-proxy", f"127.0.0.1:{appliance.port}", "-connect", target,
         "-servername", host, "-showcerts"],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", done.stdout, re.S)
    assert blocks, done.stdout + done.stderr
    return [x509.load_pem_x509_certificate(b.encode()) for b in blocks]


def _permitted_dns(cert: x509.Certificate) -> list[str]:
    constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    return [n.value for n in constraints.permitted_subtrees or [] if isinstance(n, x509.DNSName)]


def _open_tunnel(appliance: Appliance, target: str, cafile: Path) -> http.client.HTTPSConnection:
    host, port = target.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("127.0.0.1", appliance.port, context=context, timeout=10)
    conn.set_tunnel(host, int(port))
    return conn


def _get(conn: http.client.HTTPSConnection, path: str) -> int:
    conn.request("GET", path)
    answer = conn.getresponse()
    answer.read()
    return answer.status


async def test_a_registry_added_live_gets_a_reissued_intermediate_and_pulls_and_removing_it_reissues(
    tmp_path: Path,
    pki: TestPKI,
    open_registry: UpstreamRegistry,
    registry_factory: RegistryFactory,
    push_test_image: ImagePusher,
) -> None:
    late = registry_factory(server_name=OTHER_HOST)
    image = push_test_image(late, layer_sizes=(10_000,))
    spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
    resolve = [f"{late.name_port}={late.host_port}"]
    with Appliance(tmp_path / "a", [spec], upstream_ca=pki.ca_file, extra_resolve=resolve) as appliance:
        trust = appliance.cert_dir()
        root_pem = (trust / "ca.crt").read_bytes()
        before = await asyncio.to_thread(_served_chain, appliance, open_registry.name_port)
        leaf, intermediate, root = before
        assert leaf.issuer == intermediate.subject and intermediate.issuer == root.subject
        assert REGISTRY_HOST in _permitted_dns(intermediate)
        assert OTHER_HOST not in _permitted_dns(intermediate)
        # A tunnel opened before the reload, kept alive across it.
        kept = _open_tunnel(appliance, open_registry.name_port, trust / "ca.crt")
        assert await asyncio.to_thread(_get, kept, "/v2/") == 200
        kept_socket = kept.sock

        async with ControlClient(appliance.control_socket) as client:
            change = await client.add_registry({"host": late.name_port})
        assert change.applied, change

        pulled = await asyncio.to_thread(
            skopeo_copy,
            f"docker://{image.reference(late.name_port)}",
            f"dir:{tmp_path / 'late'}",
            https_proxy=appliance.url,
            cert_dir=appliance.cert_dir(),
        )
        assert pulled.check().digest == image.manifest_digest
        assert late.blob_requests(image.repository)  # through the appliance's interception

        after = await asyncio.to_thread(_served_chain, appliance, late.name_port)
        assert after[1].serial_number != intermediate.serial_number
        assert {REGISTRY_HOST, OTHER_HOST} <= set(_permitted_dns(after[1]))
        assert after[2] == root  # the root never changes...
        assert appliance.get("/ca.crt") == root_pem  # ...and neither does what clients trust
        # The tunnel made before the reload still serves, on the same connection.
        assert await asyncio.to_thread(_get, kept, "/v2/") == 200
        assert kept.sock is kept_socket
        kept.close()

        # Removing it again through the config file and a reload: re-issued without it.
        appliance.registries = [spec]
        appliance.write_config()
        async with ControlClient(appliance.control_socket) as client:
            assert (await client.reload()).applied
        removed = await asyncio.to_thread(_served_chain, appliance, open_registry.name_port)
        assert removed[1].serial_number != after[1].serial_number
        assert REGISTRY_HOST in _permitted_dns(removed[1])
        assert OTHER_HOST not in _permitted_dns(removed[1])


def _seed_ca(directory: Path) -> None:
    """``ca.crt``/``ca.key`` as the seed's create_ca_cert.sh makes them (RSA, key under ``foobar``)."""
    openssl = require_binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "ca.key", directory / "ca.crt"
    # 2048 rather than the seed's 4096 only to keep the test fast; the format is the same.
    subprocess.run(
        [openssl, "genrsa", "-aes256", "-passout", "pass:foobar", "-out", str(key), "2048"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        [openssl, "req", "-new", "-x509", "-key", str(key), "-passin", "pass:foobar", "-out", str(cert),
         "-days", "30", "-subj", "/C=NL/O=ME/OU=IT/CN=DockerMirrorBox CA Root test",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


async def test_a_seed_ca_keeps_working_through_a_constrained_intermediate_with_a_warning(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(10_000,))
    spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
    appliance = Appliance(tmp_path / "a", [spec], upstream_ca=pki.ca_file)
    await asyncio.to_thread(_seed_ca, appliance.ca_dir)
    seed_pem = (appliance.ca_dir / "ca.crt").read_bytes()
    with appliance:
        assert appliance.get("/ca.crt") == seed_pem
        assert "was not created by the appliance" in appliance.log_text()
        assert "CA itself is unconstrained" in appliance.log_text()
        leaf, intermediate, root = await asyncio.to_thread(_served_chain, appliance, open_registry.name_port)
        assert root.subject.rfc4514_string().startswith("CN=DockerMirrorBox CA Root test")
        assert intermediate.issuer == root.subject and leaf.issuer == intermediate.subject
        assert REGISTRY_HOST in _permitted_dns(intermediate)
        pulled = await asyncio.to_thread(
            skopeo_copy,
            f"docker://{image.reference(open_registry.name_port)}",
            f"dir:{tmp_path / 'pull'}",
            https_proxy=appliance.url,
            cert_dir=appliance.cert_dir(),
        )
        assert pulled.check().digest == image.manifest_digest
