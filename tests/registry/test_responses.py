"""``responses``: what a registry client receives, built from values (errors, manifests, the ping)
and from upstream answers relayed through a real loopback connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from appliance.errors import ErrorCode, RegistryError
from appliance.registry.responses import UpstreamAnswer, error_response, manifest_response, ping_response
from tests.fixtures.counting_upstream import CountingUpstream
from tests.fixtures.registry_proxy import ProxyUnderTest


def test_an_error_is_oci_json_with_its_code_message_and_status() -> None:
    response = error_response(
        RegistryError(404, ErrorCode.MANIFEST_UNKNOWN, "no such tag", detail={"tag": "x"})
    )

    assert response.status == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert isinstance(response.body, bytes)
    assert json.loads(response.body) == {
        "errors": [{"code": "MANIFEST_UNKNOWN", "message": "no such tag", "detail": {"tag": "x"}}]
    }


def test_an_error_keeps_its_own_headers() -> None:
    error = RegistryError(
        401, ErrorCode.UNAUTHORIZED, "log in", headers={"WWW-Authenticate": 'Basic realm="x"'}
    )

    response = error_response(error)

    assert response.headers["WWW-Authenticate"] == 'Basic realm="x"'
    assert json.loads(response.body)["errors"][0]["code"] == "UNAUTHORIZED"  # type: ignore[arg-type]


def test_an_upstream_answer_is_relayed_with_its_own_body_not_rewritten() -> None:
    raw = b'{"errors":[{"code":"DENIED","message":"upstream says no"}]}'
    answer = UpstreamAnswer(403, {"Content-Type": "application/json; charset=utf-8"}, raw)

    response = error_response(answer)

    assert response.status == 403
    assert response.body == raw
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


def test_the_ping_is_an_empty_json_object_naming_the_api_version() -> None:
    response = ping_response()

    assert response.status == 200
    assert response.body == b"{}"
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


@pytest.mark.parametrize("head", [False, True])
def test_a_manifest_carries_its_type_digest_and_length(head: bool) -> None:
    body = b'{"schemaVersion":2}'
    response = manifest_response(
        body, "application/vnd.oci.image.manifest.v1+json", "sha256:" + "a" * 64, head
    )

    assert response.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
    assert response.headers["Docker-Content-Digest"] == "sha256:" + "a" * 64
    assert response.headers["Etag"] == '"sha256:' + "a" * 64 + '"'
    if head:
        assert response.body is None
        assert response.headers["Content-Length"] == str(len(body))
    else:
        assert response.body == body


# -- relayed upstream answers, over a real connection ---------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[CountingUpstream]:
    async with CountingUpstream() as server:
        yield server


def noisy(request: web.Request) -> web.StreamResponse | None:
    """An upstream answer with headers a client needs and headers that must stay behind."""
    headers = {
        "WWW-Authenticate": 'Bearer realm="https://auth.test/token"',
        "Docker-Distribution-API-Version": "registry/2.0",
        "Link": '</v2/_catalog?n=1&last=a>; rel="next"',
        "Set-Cookie": "session=upstream-secret",
        "X-Upstream-Internal": "1",
    }
    return web.json_response({"repositories": ["a"]}, headers=headers)


async def test_a_relayed_answer_keeps_registry_headers_and_drops_the_rest(
    upstream: CountingUpstream, tmp_path: Path
) -> None:
    # The catalog is relayed as the upstream answered it (tag lists are paged by the appliance).
    upstream.intercept = noisy
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        response, body = await proxy.get("/v2/_catalog?n=1")

        assert response.status == 200
        assert json.loads(body) == {"repositories": ["a"]}
        assert response.headers["Link"] == '</v2/_catalog?n=1&last=a>; rel="next"'
        assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
        assert "Set-Cookie" not in response.headers
        assert "X-Upstream-Internal" not in response.headers
        assert proxy.last_event().bytes == len(body)


async def test_a_relayed_head_has_no_body_but_keeps_the_length(
    upstream: CountingUpstream, tmp_path: Path
) -> None:
    digest = upstream.add_blob(b"x" * 1234)
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        response, body = await proxy.head(f"/v2/team/app/blobs/{digest}")

        assert response.status == 200 and body == b""
        assert response.headers["Content-Length"] == "1234"
        assert response.headers["Docker-Content-Digest"] == digest
