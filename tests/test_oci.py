"""Pure OCI helpers: routing, Accept classes, media types."""

from appliance import oci
from appliance.oci import Endpoint

DIGEST = "sha256:" + "a" * 64


def test_routes_manifests_by_tag_and_digest_with_nested_names() -> None:
    route = oci.parse_route("/v2/library/alpine/manifests/3.20")
    assert (route.endpoint, route.repository, route.reference) == (
        Endpoint.MANIFEST,
        "library/alpine",
        "3.20",
    )
    by_digest = oci.parse_route(f"/v2/a/b/c/manifests/{DIGEST}")
    assert by_digest.endpoint is Endpoint.MANIFEST and by_digest.is_digest and by_digest.repository == "a/b/c"


def test_routes_blobs_uploads_tags_referrers_and_ping() -> None:
    assert oci.parse_route(f"/v2/x/blobs/{DIGEST}").endpoint is Endpoint.BLOB
    upload = oci.parse_route("/v2/x/y/blobs/uploads/1234-abcd")
    assert (upload.endpoint, upload.repository, upload.reference) == (Endpoint.UPLOAD, "x/y", "1234-abcd")
    assert oci.parse_route("/v2/x/blobs/uploads/").endpoint is Endpoint.UPLOAD
    assert oci.parse_route("/v2/x/tags/list").endpoint is Endpoint.TAGS
    assert oci.parse_route(f"/v2/x/referrers/{DIGEST}").endpoint is Endpoint.REFERRERS
    assert oci.parse_route("/v2/").endpoint is Endpoint.PING
    assert oci.parse_route("/v1/_ping").endpoint is Endpoint.V1


def test_rejects_names_outside_the_grammar() -> None:
    assert oci.parse_route("/v2/UPPER/manifests/latest").endpoint is Endpoint.OTHER
    assert oci.parse_route("/v2/a/../b/manifests/latest").endpoint is Endpoint.OTHER
    assert oci.parse_route("/v2/a/manifests/" + "t" * 200).endpoint is Endpoint.OTHER


def test_accept_class_separates_docker_v2_from_oci_index_clients() -> None:
    docker_only = oci.parse_accept([oci.DOCKER_MANIFEST_V2])
    everything = oci.parse_accept([f"{oci.OCI_INDEX}, {oci.DOCKER_MANIFEST_V2};q=0.9", oci.OCI_MANIFEST])
    assert oci.accept_class(docker_only) != oci.accept_class(everything)
    assert oci.accept_class(()) == "default"
    assert oci.accept_class(oci.parse_accept(["*/*"])) == "default"
    # Order and parameters don't matter.
    again = oci.parse_accept([oci.OCI_MANIFEST, oci.DOCKER_MANIFEST_V2, oci.OCI_INDEX])
    assert oci.accept_class(again) == oci.accept_class(everything)


def test_manifest_media_type_prefers_header_then_body() -> None:
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}'
    assert oci.manifest_media_type(body, "application/json") == oci.OCI_INDEX
    assert oci.manifest_media_type(body, f"{oci.DOCKER_MANIFEST_V2}; charset=utf-8") == oci.DOCKER_MANIFEST_V2


def test_push_refusal_says_how_to_enable_it() -> None:
    exc = oci.push_disabled("PUT", "registry.test")
    assert exc.status == 405 and b"ALLOW_PUSH=true" in exc.body()
