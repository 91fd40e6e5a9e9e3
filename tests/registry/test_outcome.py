"""``outcome``: a call and what came of it become one event, the same way for every service.

The mapping is pinned on values (every field, escaping, the audit fields, errors as outcomes), and
then through a real proxy against a counting upstream: the event of a cold blob, a cached
manifest, a relayed refusal and an unreachable upstream each say what happened on the wire.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from appliance.errors import ErrorCode, IntegrityError, RegistryError, UpstreamError, UpstreamUnreachable
from appliance.events import CacheStatus, RequestKind
from appliance.oci import Endpoint, Route, parse_route
from appliance.protocol.events import AccessResult
from appliance.registry.outcome import Call, Failed, Served, event, failure, kind_of, relayed
from appliance.registry.request_context import ClientAddress, Mode, RequestContext
from appliance.registry.responses import Relayed, UpstreamAnswer
from tests.fixtures.counting_upstream import CountingUpstream, Image, sha256_digest
from tests.fixtures.registry_proxy import ProxyUnderTest

REPO = "team/app"
SECRET = "Bearer client-own-secret-token"


def call(path: str = f"/v2/{REPO}/manifests/v1", **changes: object) -> Call:
    route = parse_route(path)
    values: dict[str, object] = {
        "client": "127.0.0.1:5000",
        "registry": "r.test",
        "method": "GET",
        "route": route,
        "path_qs": path,
        "kind": kind_of(route),
        "authorization": SECRET,
    }
    values.update(changes)
    return Call(**values)  # type: ignore[arg-type]


def test_the_event_carries_who_asked_for_what_and_what_came_of_it() -> None:
    outcome = Served(CacheStatus.MISS, 200, 1234, 200, "")

    got = event(call(), outcome)

    assert (got.client, got.registry, got.method) == ("127.0.0.1:5000", "r.test", "GET")
    assert (got.repository, got.kind, got.reference) == (REPO, RequestKind.MANIFEST, "v1")
    assert (got.status, got.http_status, got.bytes, got.upstream_status) == (CacheStatus.MISS, 200, 1234, 200)
    assert got.duration >= 0.0
    assert (got.identity, got.access, got.access_reason) == ("", "", "")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (f"/v2/{REPO}/blobs/sha256:" + "a" * 64, RequestKind.BLOB),
        (f"/v2/{REPO}/manifests/v1", RequestKind.MANIFEST),
        (f"/v2/{REPO}/tags/list", RequestKind.TAG),
        (f"/v2/{REPO}/blobs/uploads/", RequestKind.UPLOAD),
        ("/v2/", RequestKind.OTHER),
        ("/v2/_catalog", RequestKind.OTHER),
    ],
)
def test_the_kind_of_a_request_follows_its_route(path: str, kind: RequestKind) -> None:
    assert kind_of(parse_route(path)) is kind


def test_the_audit_fields_of_the_call_reach_the_event() -> None:
    asked = call(identity="ci-runner").decided(AccessResult.DENIED, "no pull on team/app")

    got = event(asked, Failed(403, "denied"))

    assert (got.identity, got.access, got.access_reason) == ("ci-runner", "denied", "no pull on team/app")
    assert got.status is CacheStatus.ERROR and got.http_status == 403


def test_text_a_client_chose_is_escaped_in_the_event() -> None:
    forged = Route(Endpoint.MANIFEST, "team/app\nFAKE 200 line", "v1\x1b[31m")

    got = event(call(route=forged, method="GET\r\n"), Served(CacheStatus.HIT, message="why\nnot"))

    assert "\n" not in got.repository and "\x1b" not in got.reference and "\r" not in got.method
    assert got.repository == "team/app\\x0aFAKE 200 line"
    assert got.message == "why\\x0anot"


def test_the_clients_own_authorization_is_in_neither_the_event_nor_the_call_repr() -> None:
    asked = call()

    got = event(asked, Served(CacheStatus.BYPASS))

    assert "client-own-secret" not in repr(asked)
    assert "client-own-secret" not in str(got.to_dict())


def test_an_upstream_refusal_relayed_is_bypass_with_the_upstreams_status() -> None:
    refusal = UpstreamAnswer(401, {"WWW-Authenticate": 'Bearer realm="x"'}, b"{}")

    outcome, answer = failure(refusal, "r.test")

    assert outcome == Failed(401, "upstream answered 401", 401, CacheStatus.BYPASS)
    assert answer is refusal


def test_a_registry_error_of_our_own_is_an_error_answered_as_it_is() -> None:
    refused = RegistryError(416, ErrorCode.BLOB_UNKNOWN, "requested range not satisfiable")

    outcome, answer = failure(refused, "r.test")

    assert outcome == Failed(416, "requested range not satisfiable", None, CacheStatus.ERROR)
    assert answer is refused


@pytest.mark.parametrize(
    ("error", "http_status", "code", "upstream_status"),
    [
        (UpstreamUnreachable("r.test", "connection refused"), 502, ErrorCode.UNAVAILABLE, None),
        (UpstreamError("r.test", "rate limited", status=429), 429, ErrorCode.TOOMANYREQUESTS, 429),
        (IntegrityError("r.test", "digest mismatch", status=200), 502, ErrorCode.UNAVAILABLE, 200),
    ],
)
def test_an_upstream_failure_is_an_error_keeping_what_the_upstream_answered(
    error: UpstreamError, http_status: int, code: ErrorCode, upstream_status: int | None
) -> None:
    outcome, answer = failure(error, "r.test")

    assert outcome == Failed(http_status, error.message, upstream_status, CacheStatus.ERROR)
    assert (answer.status, answer.code) == (http_status, code)
    assert answer.message == f"upstream r.test: {error.message}"


def test_a_relayed_answer_is_bypass_counting_the_bytes_that_went_out() -> None:
    response = web.StreamResponse(status=404)

    whole = relayed(Relayed(response, 404, 120))
    cut = relayed(Relayed(response, 200, 64, disconnected=True))

    assert whole.response is response
    assert whole.outcome == Served(CacheStatus.BYPASS, 404, 120, 404, "")
    assert cut.outcome == Served(CacheStatus.BYPASS, 200, 64, 200, "client disconnected")


# -- through a real proxy ---------------------------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[CountingUpstream]:
    async with CountingUpstream() as server:
        yield server


@pytest.fixture
def image(upstream: CountingUpstream) -> Image:
    return upstream.add_image(REPO, "v1", [b"one" * 1000, b"two"])


async def test_a_cold_blob_event_counts_the_streamed_bytes_and_the_upstream_answer(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    digest = sha256_digest(b"one" * 1000)
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        response, body = await proxy.get(f"/v2/{REPO}/blobs/{digest}")
        assert response.status == 200 and body == b"one" * 1000
        cold = proxy.last_event()

        await proxy.get(f"/v2/{REPO}/blobs/{digest}")
        warm = proxy.last_event()

    assert (cold.status, cold.bytes, cold.upstream_status) == (CacheStatus.MISS, 3000, 200)
    # From the cache (the fill may still be committing): nothing asked upstream for it.
    assert warm.status in (CacheStatus.HIT, CacheStatus.COALESCED)
    assert (warm.bytes, warm.upstream_status) == (3000, None)


async def test_a_manifest_event_says_head_sent_no_bytes(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        await proxy.get(f"/v2/{REPO}/manifests/{image.digest}")
        got = proxy.last_event()
        await proxy.head(f"/v2/{REPO}/manifests/{image.digest}")
        head = proxy.last_event()

    assert (got.status, got.bytes, got.upstream_status) == (CacheStatus.MISS, len(image.manifest.body), 200)
    assert (head.status, head.http_status, head.bytes, head.upstream_status) == (
        CacheStatus.HIT,
        200,
        0,
        None,
    )


async def test_a_refusal_from_upstream_is_one_bypass_event_with_its_status(
    upstream: CountingUpstream, tmp_path: Path
) -> None:
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        response, _ = await proxy.get(f"/v2/{REPO}/manifests/nosuchtag")
        got = proxy.last_event()
        events = len(proxy.seen)

    assert response.status == 404
    assert events == 1
    assert (got.status, got.http_status, got.upstream_status) == (CacheStatus.BYPASS, 404, 404)


async def test_an_unreachable_upstream_is_an_error_event_with_no_upstream_status(tmp_path: Path) -> None:
    async with CountingUpstream() as upstream:
        pass  # stopped: its port now refuses connections
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", upstream.port)) != 0
    async with ProxyUnderTest(upstream, tmp_path) as proxy:
        response, _ = await proxy.get(f"/v2/{REPO}/manifests/v1")
        got = proxy.last_event()

    assert response.status == 502
    assert (got.status, got.http_status, got.upstream_status) == (CacheStatus.ERROR, 502, None)
    assert got.message


@dataclass(frozen=True)
class Named:
    name: str


class IdentifiedProxy(ProxyUnderTest):
    """The proxy as the front door calls it for a client that proved to be ``ci-runner``."""

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        context = RequestContext(
            ClientAddress("127.0.0.1"), Mode.MIRROR, self.registry, identity=Named("ci-runner")
        )
        return await self.proxy.handle(request, context, request.path_qs)


async def test_the_identity_in_the_request_context_is_in_the_event(
    upstream: CountingUpstream, image: Image, tmp_path: Path
) -> None:
    async with IdentifiedProxy(upstream, tmp_path) as proxy:
        await proxy.get(f"/v2/{REPO}/manifests/v1")

    assert proxy.last_event().identity == "ci-runner"
