"""Tag list pagination as the distribution spec defines it: ``?n=<count>&last=<tag>``, pure.

The answer holds the tags in lexical order, strictly after ``last``, at most ``n`` of them, and a
``Link: <...?n=&last=>; rel="next"`` header when more follow.  Some upstreams (distribution 2.8)
ignore both parameters and answer every tag; the appliance applies them to whatever came back, so
a client gets the same page either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from appliance import oci
from appliance.errors import ErrorCode
from appliance.logsafe import shown
from appliance.registry.request_input import BadRequest, query_string

# More than any registry lists in one page (distribution caps n at 1000 by default).
MAX_N = 100_000
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.IGNORECASE)


class TagListError(ValueError):
    """The upstream's tag list is not the JSON document the spec describes."""


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What the client asked for: ``n`` (None: no limit) and ``last`` (None: from the start)."""

    n: int | None = None
    last: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    tags: tuple[str, ...]
    next_last: str | None  # the ``last`` of the next page, when there is one
    n: int | None  # the ``n`` the next page's link carries

    def body(self) -> bytes:
        return json.dumps({"name": self.name, "tags": list(self.tags)}).encode()


def page_request(query: Iterable[tuple[str, str]]) -> PageRequest:
    """``n`` and ``last`` from the client's query; BadRequest when ``n`` is not a count."""
    n: int | None = None
    last: str | None = None
    for key, value in query:
        if key == "n":
            if not value.isascii() or not value.isdigit() or int(value) > MAX_N:
                raise BadRequest(
                    ErrorCode.PAGINATION_NUMBER_INVALID,
                    f"n={shown(value, 40)!r} is not a number of tags from 0 to {MAX_N}",
                )
            n = int(value)
        elif key == "last":
            if not oci.is_tag(value):
                raise BadRequest(ErrorCode.MANIFEST_INVALID, f"last={shown(value, 140)!r} is not a tag")
            last = value
    return PageRequest(n, last)


def next_from_link(link: str | None) -> tuple[int | None, str | None] | None:
    """The ``n`` and ``last`` of an upstream's ``rel="next"`` link; None when it sent none."""
    if not link:
        return None
    match = _LINK_NEXT.search(link)
    if match is None:
        return None
    params = dict(parse_qsl(urlsplit(match.group(1)).query))
    n_text = params.get("n", "")
    return (int(n_text) if n_text.isascii() and n_text.isdigit() else None), params.get("last")


def parse_tag_list(body: bytes) -> tuple[str, tuple[str, ...]]:
    """``(name, tags)`` from an upstream's answer; TagListError when it is not one."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TagListError(f"tag list is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise TagListError("tag list is not a JSON object")
    name, tags = document.get("name"), document.get("tags")
    if tags is None:
        tags = []  # distribution answers null for a repository without tags
    if not isinstance(name, str) or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise TagListError('tag list needs "name" (a string) and "tags" (a list of strings)')
    return name, tuple(tags)


def paginate(name: str, tags: Iterable[str], asked: PageRequest, upstream_next: bool) -> Page:
    """The page ``asked`` for, out of ``tags`` (the upstream's answer, paginated by it or not).

    ``upstream_next``: the upstream said more tags follow the ones it sent.
    """
    after = sorted({tag for tag in tags if asked.last is None or tag > asked.last})
    page = after if asked.n is None else after[: asked.n]
    more = len(page) < len(after) or upstream_next
    next_last = page[-1] if more and page else None
    return Page(name, tuple(page), next_last, asked.n)


def next_link(client_path: str, keep: Iterable[tuple[str, str]], page: Page) -> str | None:
    """The ``Link`` header for the page after ``page``, on the path the client used."""
    if page.next_last is None:
        return None
    pairs = [(k, v) for k, v in keep if k not in ("n", "last")]
    if page.n is not None:
        pairs.append(("n", str(page.n)))
    pairs.append(("last", page.next_last))
    return f'<{client_path}{query_string(pairs)}>; rel="next"'
