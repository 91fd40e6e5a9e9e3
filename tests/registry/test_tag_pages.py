"""Tag list pages (tag_pages): the distribution spec's n and last, applied to any upstream answer."""

from __future__ import annotations

import pytest

from appliance.errors import ErrorCode
from appliance.registry.request_input import BadRequest
from appliance.registry.tag_pages import (
    PageRequest,
    TagListError,
    next_link,
    page_request,
    paginate,
    parse_tag_list,
)

TAGS = ("v3", "v1", "latest", "v2", "v1")


def test_a_page_is_sorted_strictly_after_last_and_at_most_n_long() -> None:
    page = paginate("x", TAGS, PageRequest(n=2, last="latest"), upstream_next=False)
    assert page.tags == ("v1", "v2") and page.next_last == "v2"
    assert next_link("/v2/x/tags/list", [("ns", "r.test"), ("n", "2")], page) == (
        '</v2/x/tags/list?ns=r.test&n=2&last=v2>; rel="next"'
    )
    final = paginate("x", TAGS, PageRequest(n=2, last="v2"), upstream_next=False)
    assert final.tags == ("v3",) and final.next_last is None
    assert next_link("/v2/x/tags/list", [], final) is None


def test_an_upstream_that_paginated_itself_keeps_the_next_link() -> None:
    page = paginate("x", ("a", "b"), PageRequest(n=2), upstream_next=True)
    assert page.tags == ("a", "b") and page.next_last == "b"
    unlimited = paginate("x", ("b", "a"), PageRequest(), upstream_next=False)
    assert unlimited.tags == ("a", "b") and unlimited.next_last is None
    assert paginate("x", TAGS, PageRequest(n=0), upstream_next=False).tags == ()


@pytest.mark.parametrize("n", ["-1", "x", "1.5", "²", "9" * 30])
def test_n_that_is_not_a_count_is_pagination_number_invalid(n: str) -> None:
    with pytest.raises(BadRequest) as caught:
        page_request([("n", n)])
    assert caught.value.code is ErrorCode.PAGINATION_NUMBER_INVALID


def test_an_upstream_tag_list_of_the_wrong_shape_is_a_tag_list_error() -> None:
    assert parse_tag_list(b'{"name": "x", "tags": null}') == ("x", ())
    for body in (b"[]", b"{", b'{"name": 1, "tags": []}', b'{"name": "x", "tags": [1]}', b"\xff"):
        with pytest.raises(TagListError):
            parse_tag_list(body)
