"""Issues 14 and 15: how the engine reads what clients send, with a real registry and curl.

Each request is made both ways a client reaches the appliance: as an HTTPS proxy (MITM) and as a
plain-HTTP mirror (``/v2/<registry>/...``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.front.mirror import path_segment
from tests.fixtures import BOB
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import CurlResult, curl
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import TOKEN_HOST, TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tests.fixtures.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MODES = ("mitm", "mirror")


@dataclass
class Setup:
    appliance: Appliance
    registry: UpstreamRegistry

    def url(self, mode: str, path: str) -> str:
        """``path`` (``/v2/<repo>/...`` as the registry knows it) the way a client in ``mode`` asks."""
        if mode == "mitm":
            return f"https://{self.registry.name_port}{path}"
        prefix = path_segment(self.registry.name_port)
        return f"{self.appliance.url}/v2/{prefix}/{path.removeprefix('/v2/')}"

    def curl(
        self, mode: str, path: str, *, head: bool = False, header_lines: Sequence[str] = (), raw: bool = False
    ) -> CurlResult:
        extra: list[str] = []
        for line in header_lines:
            extra += ["-H", line]
        if raw:
            extra.append("--path-as-is")
        if mode == "mitm":
            return curl(
                self.url(mode, path),
                proxy=self.appliance.url,
                cacert=self.appliance.cert_dir() / "ca.crt",
                head=head,
                extra=extra,
            )
        return curl(self.url(mode, path), head=head, extra=extra)


@pytest.fixture
def setup(tmp_path: Path, pki: TestPKI, htpasswd_registry: UpstreamRegistry) -> Iterator[Setup]:
    spec = UpstreamSpec(
        htpasswd_registry.name_port, htpasswd_registry.host_port, credentials=htpasswd_registry.creds
    )
    with Appliance(tmp_path / "appliance", [spec], upstream_ca=pki.ca_file) as appliance:
        yield Setup(appliance, htpasswd_registry)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_accept_sent_as_several_header_lines_is_read_as_their_union(
    setup: Setup, push_test_image: ImagePusher, mode: str, method: str
) -> None:
    # A single OCI manifest under the tag; the client lists it on its second Accept line, as Go
    # clients built on distribution's client (the Docker engine among them) do.
    image = push_test_image(setup.registry, layer_sizes=(1000,))
    path = f"/v2/{image.repository}/manifests/{image.tag}"
    lines = [f"Accept: {OCI_INDEX}", f"Accept: {OCI_MANIFEST}"]
    answer = setup.curl(mode, path, head=method == "HEAD", header_lines=lines)
    assert answer.status == 200, (answer.status, answer.body, answer.stderr)
    assert answer.headers.get("docker-content-digest") == image.manifest_digest
    assert answer.headers.get("content-type") == OCI_MANIFEST
    # And once cached, the same (a HEAD after a GET is answered from the cache, keyed by the union).
    again = setup.curl(mode, path, head=True, header_lines=lines)
    assert again.status == 200 and again.headers.get("docker-content-digest") == image.manifest_digest


def _oci_error(answer: CurlResult) -> str:
    body = json.loads(answer.body)
    code: str = body["errors"][0]["code"]
    return code


def _no_traceback(appliance: Appliance) -> None:
    text = appliance.log_text()
    assert "Traceback" not in text and "Error handling request" not in text, text[-3000:]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize("kind", ["manifests", "blobs"])
def test_a_malformed_digest_is_a_400_digest_invalid_without_upstream_request_or_traceback(
    setup: Setup, mode: str, method: str, kind: str
) -> None:
    repository = f"test/bad-digest-{mode}-{method.lower()}-{kind}"
    setup.registry.clear_requests()
    for digest in ("sha256:totallywrong", "sha256:" + "a" * 63, "md5:" + "a" * 32, "sha256:" + "A" * 64):
        answer = setup.curl(mode, f"/v2/{repository}/{kind}/{digest}", head=method == "HEAD")
        assert answer.status == 400, (digest, answer.status, answer.body)
        if method == "GET":
            assert _oci_error(answer) == "DIGEST_INVALID"
    assert [r for r in setup.registry.requests() if repository in r.path] == []
    _no_traceback(setup.appliance)
    warnings = [line for line in setup.appliance.log_text().splitlines() if "refused" in line]
    assert len(warnings) == 4 and all(" WARNING " in line for line in warnings), warnings


@pytest.mark.parametrize("mode", MODES)
def test_tag_list_pages_by_n_and_last_even_when_the_upstream_ignores_them(
    setup: Setup, push_test_image: ImagePusher, mode: str
) -> None:
    repository = f"test/tag-pages-{mode}"
    for tag in ("v3", "v1", "v2"):
        push_test_image(setup.registry, repository, tag=tag, layer_sizes=(500,))
    path = f"/v2/{repository}/tags/list"
    everything = setup.curl(mode, path)
    assert everything.status == 200 and json.loads(everything.body)["tags"] == ["v1", "v2", "v3"]
    assert "link" not in everything.headers

    first = setup.curl(mode, path + "?n=1&last=v1")
    assert first.status == 200, first.body
    assert json.loads(first.body) == {"name": repository, "tags": ["v2"]}
    # The next page's link is on the path this client used (a mirror's registry prefix kept).
    client_path = setup.url(mode, path).split("://", 1)[1].partition("/")[2]
    assert first.headers.get("link") == f'</{client_path}?n=1&last=v2>; rel="next"'
    last = setup.curl(mode, path + "?n=1&last=v2")
    assert json.loads(last.body)["tags"] == ["v3"] and "link" not in last.headers
    two = setup.curl(mode, path + "?n=2")
    assert json.loads(two.body)["tags"] == ["v1", "v2"] and "last=v2" in two.headers["link"]
    assert json.loads(setup.curl(mode, path + "?n=0").body)["tags"] == []

    bad = setup.curl(mode, path + "?n=many")
    assert bad.status == 400 and _oci_error(bad) == "PAGINATION_NUMBER_INVALID"


def _log_lines(appliance: Appliance) -> list[str]:
    return appliance.log_path.read_bytes().decode("utf-8", "replace").splitlines()


@pytest.mark.parametrize("mode", MODES)
def test_control_characters_in_a_request_are_a_400_and_one_escaped_warning_line(
    setup: Setup, mode: str
) -> None:
    repository = f"test/hostile-{mode}"
    setup.registry.clear_requests()
    nul = setup.curl(mode, f"/v2/{repository}/manifests/v1%00")
    assert nul.status == 400, (nul.status, nul.body)
    forged = setup.curl(mode, f"/v2/{repository}/manifests/latest%0aHIT%20FORGED-LINE")
    assert forged.status == 400, (forged.status, forged.body)
    assert [r for r in setup.registry.requests() if repository in r.path] == []

    raw = setup.appliance.log_path.read_bytes()
    assert b"\x00" not in raw
    lines = _log_lines(setup.appliance)
    # Every line of the log is one the engine wrote whole: none starts with the client's text.
    assert not [line for line in lines if line.startswith(("HIT", "FORGED"))], lines[-5:]
    mine = [line for line in lines if repository in line]
    assert len(mine) == 2 and all(" WARNING appliance.engine: " in line for line in mine), mine
    assert "\\x00" in mine[0] and "\\x0aHIT FORGED-LINE" in mine[1]
    _no_traceback(setup.appliance)


@pytest.mark.parametrize(
    "path",
    ["/admin", "/../admin", "/v2/x/../../../etc/passwd", "/v2/x/%2e%2e/%2e%2e/admin", "/v2/a%20b/tags/list"],
)
def test_inside_a_tunnel_only_the_registry_api_reaches_the_upstream(setup: Setup, path: str) -> None:
    setup.registry.clear_requests()
    answer = setup.curl("mitm", path, raw=True)
    assert answer.status in (400, 404), (answer.status, answer.body)
    assert _oci_error(answer) in ("NAME_UNKNOWN", "NAME_INVALID")
    assert setup.registry.requests() == []
    _no_traceback(setup.appliance)


@pytest.mark.parametrize(
    "path", ["/v2/x/%2e%2e/%2e%2e/admin", "/v2/x/../../admin", "/v2/a%20b/tags/list", "/v2/x/y/admin"]
)
def test_mirror_mode_sends_only_validated_registry_paths_upstream(setup: Setup, path: str) -> None:
    setup.registry.clear_requests()
    answer = setup.curl("mirror", path, raw=True)
    assert answer.status in (400, 404), (answer.status, answer.body)
    assert setup.registry.requests() == []
    _no_traceback(setup.appliance)


def _token_subject(answer: CurlResult) -> str:
    token = json.loads(answer.body)["token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    subject: str = claims["sub"]
    return subject


def test_a_token_realm_host_gets_the_seed_credential_on_token_requests_only(
    tmp_path: Path, pki: TestPKI, token_server: TokenServer, token_registry: UpstreamRegistry
) -> None:
    realm = f"{TOKEN_HOST}:{token_server.port}"
    spec = UpstreamSpec(
        token_registry.name_port, token_registry.host_port, credentials=BOB, auth_hosts=(realm,)
    )
    resolve = [f"{realm}=127.0.0.1:{token_server.port}"]
    with Appliance(
        tmp_path / "appliance", [spec], upstream_ca=pki.ca_file, extra_resolve=resolve
    ) as appliance:
        ca = appliance.cert_dir() / "ca.crt"
        scoped = curl(
            f"https://{realm}/token?service=registry.test&scope=repository:x/y:pull",
            proxy=appliance.url,
            cacert=ca,
        )
        assert scoped.status == 200 and _token_subject(scoped) == BOB[0]
        # Not a token request (no service, no scope): relayed, but without the engine's credential.
        other = curl(f"https://{realm}/token?lang=en", proxy=appliance.url, cacert=ca)
        assert other.status == 200 and _token_subject(other) == ""
        dotted = curl(
            f"https://{realm}/x/../token?service=registry.test",
            proxy=appliance.url,
            cacert=ca,
            extra=["--path-as-is"],
        )
        assert dotted.status == 400
        _no_traceback(appliance)
