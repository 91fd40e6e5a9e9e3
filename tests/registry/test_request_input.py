"""Client input parsed once (request_input): routes, digests, paths, headers, and log-safe text."""

from __future__ import annotations

import aiohttp
import pytest
from multidict import CIMultiDict

from appliance.config.model import Config
from appliance.config.seed_env import apply_env
from appliance.errors import ConfigError, ErrorCode
from appliance.oci import Endpoint
from appliance.registry import request_input
from appliance.registry.request_input import BadRequest
from appliance.registry.tag_pages import next_from_link
from appliance.upstream.failures import describe_failure

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/x/manifests/sha256:totallywrong", ErrorCode.DIGEST_INVALID),
        ("/v2/x/blobs/sha256:totallywrong", ErrorCode.DIGEST_INVALID),
        ("/v2/x/blobs/md5:" + "a" * 32, ErrorCode.DIGEST_INVALID),
        ("/v2/x/blobs/latest", ErrorCode.DIGEST_INVALID),
        ("/v2/x/referrers/sha256:AB", ErrorCode.DIGEST_INVALID),
        ("/v2/x/manifests/v1\x00", ErrorCode.MANIFEST_INVALID),
        ("/v2/X/manifests/latest", ErrorCode.NAME_INVALID),
        ("/v2/x/../y/manifests/latest", ErrorCode.NAME_INVALID),
        ("/v2/x/blobs/uploads/a b", ErrorCode.BLOB_UPLOAD_INVALID),
        ("/v2/x/blobs/uploads/..", ErrorCode.BLOB_UPLOAD_INVALID),
    ],
)
def test_an_invalid_part_of_a_registry_path_is_a_400_naming_it(path: str, code: ErrorCode) -> None:
    with pytest.raises(BadRequest) as caught:
        request_input.api_request(path, ())
    assert caught.value.status == 400 and caught.value.code is code
    assert "\x00" not in caught.value.message


def test_the_upstream_path_is_rebuilt_from_validated_parts_with_a_freshly_encoded_query() -> None:
    api = request_input.api_request(f"/v2/a/b/blobs/{DIGEST}", [("x", "1 2"), ("y", "ä/&")])
    assert api is not None and api.route.endpoint is Endpoint.BLOB
    assert api.upstream_path_qs == f"/v2/a/b/blobs/{DIGEST}?x=1%202&y=%C3%A4%2F%26"
    assert request_input.api_request("/v2/", ()) is not None
    assert request_input.api_request("/admin", ()) is None
    assert request_input.api_request("/v2/x/y/admin", ()) is None


@pytest.mark.parametrize("path", ["/..", "/a/../b", "/a/./b", "/a b", "/a\x00", "a", "/%2e"])
def test_only_plain_paths_may_be_relayed_as_they_are(path: str) -> None:
    assert request_input.clean_path(path) is None
    assert not request_input.is_token_request("GET", path, [("service", "x")])


def test_a_token_request_is_a_get_with_service_or_scope() -> None:
    assert request_input.is_token_request("GET", "/token", [("service", "r"), ("scope", "repository:a:pull")])
    assert not request_input.is_token_request("GET", "/token", [("lang", "en")])
    assert not request_input.is_token_request("POST", "/token", [("service", "r")])


def test_accept_lines_are_one_list_and_single_headers_must_agree() -> None:
    headers = CIMultiDict([("Accept", "a/x"), ("Accept", "b/y, c/z;q=0.5"), ("Range", "bytes=0-1")])
    assert request_input.accept(headers) == ("a/x", "b/y", "c/z")
    assert request_input.forward_headers(headers, ("Accept", "Range")) == {
        "Accept": "a/x, b/y, c/z;q=0.5",
        "Range": "bytes=0-1",
    }
    headers.add("Range", "bytes=0-1")
    request_input.check_headers(headers)  # the same value twice is one meaning
    headers.add("Range", "bytes=5-9")
    with pytest.raises(BadRequest, match="3 different Range headers"):
        request_input.check_headers(headers)


def test_a_malformed_upstream_answer_is_described_on_one_line() -> None:
    exc = aiohttp.ClientResponseError(None, (), status=400, message="Data after:\n\n  b'x'\n   ^")  # type: ignore[arg-type]
    assert "\n" not in describe_failure(exc, "registry.test")


def test_digit_like_characters_that_int_refuses_are_config_errors() -> None:
    for name in ("APPLIANCE_PULL_AHEAD", "APPLIANCE_EVENT_QUEUE"):
        with pytest.raises(ConfigError) as caught:
            apply_env(Config(), {name: "²"})
        assert caught.value.where == name


def test_an_upstream_next_link_with_an_odd_n_is_still_read() -> None:
    assert next_from_link('</v2/x/tags/list?n=%C2%B2&last=b>; rel="next"') == (None, "b")
