"""What a client sent, read once at the door: its route, digests, query and headers, validated.

Handlers never parse client text themselves: they get a ``Route`` whose name, reference and
digest match the OCI grammar, an upstream path rebuilt from those parts (never the raw path), and
headers whose several lines have been folded into one meaning.  Anything that does not parse is a
``BadRequest`` - a 400 with the OCI error body, raised before anything goes upstream - so an
exception from client input can never become a 500.

Requests that are not the registry API (``RegistryApi.NOT_API``) are the caller's to refuse: see
``front.router.Router`` for what each front door does with them (docs/mirror-mode.md, README).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from multidict import MultiMapping

from appliance import oci
from appliance.digests import parse_digest
from appliance.errors import ErrorCode, RegistryError
from appliance.logsafe import shown
from appliance.oci import Endpoint, Route

# Longest request path the appliance acts on; aiohttp already caps the request line at 8 KiB.
MAX_PATH = 4096
# A blob upload session id, as registries hand them out in Location (a UUID for distribution).
_UPLOAD_ID = re.compile(r"[A-Za-z0-9._~=-]{1,256}")
# The shape of a registry path whose parts are checked one by one, so the 400 can name the part.
_LOOSE = re.compile(
    r"^/v2/(?P<name>.+?)/(?:"
    r"(?P<kind>manifests|blobs|referrers)/(?P<ref>[^/]*)"
    r"|blobs/uploads(?:/(?P<upload>[^/]*))?"
    r"|tags/list"
    r")$",
    re.DOTALL,
)
_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
# A path that may go upstream as it is: plain segments, none of them a dot segment.
_CLEAN_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
# Request headers that mean one thing: several different lines of them are ambiguous.
SINGLE_HEADERS = ("Authorization", "Content-Type", "Content-Length", "Content-Range", "Range")
# Query keys that make a GET a token request (the distribution token spec: realm?service=&scope=).
TOKEN_QUERY_KEYS = frozenset({"service", "scope", "account"})

Query = tuple[tuple[str, str], ...]


class BadRequest(RegistryError):
    """Client input the appliance will not act on: a 400, logged as one line, no traceback."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(400, code, message)


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """A registry API request, validated: what to serve and what to ask the upstream for."""

    route: Route
    upstream_path_qs: str


def api_request(path: str, query: Iterable[tuple[str, str]]) -> ApiRequest | None:
    """The registry API request ``path`` (decoded, without query) addresses, or None if it is none.

    ``BadRequest`` when it is meant as one (it has the shape of a registry path) but a part of it
    is not valid: the name, the tag, the digest or the upload id.
    """
    if len(path) > MAX_PATH:
        raise BadRequest(ErrorCode.NAME_INVALID, f"request path longer than {MAX_PATH} characters")
    route = oci.parse_route(path)
    if route.endpoint is Endpoint.OTHER:
        _explain_invalid(path)
        return None
    if route.endpoint is Endpoint.V1:
        return ApiRequest(route, "")
    if route.endpoint is Endpoint.UPLOAD and route.reference and not _valid_upload_id(route.reference):
        raise BadRequest(ErrorCode.BLOB_UPLOAD_INVALID, f"invalid upload id {shown(route.reference)!r}")
    digest_ref = route.endpoint in (Endpoint.BLOB, Endpoint.REFERRERS) or (
        route.endpoint is Endpoint.MANIFEST and route.is_digest
    )
    if digest_ref:
        _check_digest(route.reference)
    return ApiRequest(route, upstream_path(route) + query_string(query))


def _valid_upload_id(text: str) -> bool:
    # A dot segment (``..``) would walk the upstream path up, whatever the grammar allows.
    return _UPLOAD_ID.fullmatch(text) is not None and set(text) != {"."}


def upstream_path(route: Route) -> str:
    """The upstream path for a validated route, built from its parts."""
    name, ref = route.repository, route.reference
    match route.endpoint:
        case Endpoint.PING:
            return "/v2/"
        case Endpoint.CATALOG:
            return "/v2/_catalog"
        case Endpoint.MANIFEST:
            return f"/v2/{name}/manifests/{ref}"
        case Endpoint.BLOB:
            return f"/v2/{name}/blobs/{ref}"
        case Endpoint.UPLOAD:
            return f"/v2/{name}/blobs/uploads/{ref}"
        case Endpoint.TAGS:
            return f"/v2/{name}/tags/list"
        case Endpoint.REFERRERS:
            return f"/v2/{name}/referrers/{ref}"
    raise ValueError(f"no upstream path for {route.endpoint}")


def query_string(pairs: Iterable[tuple[str, str]]) -> str:
    """``?k=v&...`` percent-encoded afresh from decoded pairs (empty when there are none)."""
    items = list(pairs)
    return "?" + urlencode(items, quote_via=quote) if items else ""


def clean_path(path: str) -> str | None:
    """``path`` when it may go upstream as it is (plain segments, no dot segment), else None."""
    if path == "/":
        return path
    segments = path.removeprefix("/").removesuffix("/").split("/")
    if not path.startswith("/") or len(path) > MAX_PATH:
        return None
    for segment in segments:
        if not _CLEAN_SEGMENT.fullmatch(segment) or set(segment) == {"."}:
            return None
    return path


def is_token_request(method: str, path: str, query: Iterable[tuple[str, str]]) -> bool:
    """A GET to a token realm, as the distribution token spec shapes it (``?service=..&scope=..``)."""
    keys = {key for key, _ in query}
    return method in ("GET", "HEAD") and clean_path(path) is not None and bool(keys & TOKEN_QUERY_KEYS)


def accept(headers: MultiMapping[str]) -> tuple[str, ...]:
    """Every media type the client accepts, over all its ``Accept`` lines (Go clients send several)."""
    return oci.parse_accept(headers.getall("Accept", []))


def single_header(headers: MultiMapping[str], name: str) -> str | None:
    """A header that means one thing; BadRequest when the client sent different values of it."""
    values = headers.getall(name, [])
    if not values:
        return None
    if any(value != values[0] for value in values[1:]):
        raise BadRequest(ErrorCode.UNSUPPORTED, f"{len(values)} different {name} headers in one request")
    return values[0]


def check_headers(headers: MultiMapping[str]) -> None:
    """Refuse requests whose single-meaning headers disagree, before any handler reads them."""
    for name in SINGLE_HEADERS:
        single_header(headers, name)


def forward_headers(headers: MultiMapping[str], names: Iterable[str]) -> dict[str, str]:
    """The client's ``names`` headers for a pass-through request: ``Accept`` lines joined, in order."""
    out: dict[str, str] = {}
    for name in names:
        values = headers.getall(name, [])
        if not values:
            continue
        # Accept is a list header: several lines mean one comma-separated list (RFC 9110, 5.3).
        out[name] = ", ".join(values) if name.lower() == "accept" else values[0]
    return out


def _check_digest(text: str) -> None:
    try:
        parse_digest(text)
    except ValueError as exc:
        raise BadRequest(ErrorCode.DIGEST_INVALID, shown(str(exc), 300)) from None


def _explain_invalid(path: str) -> None:
    """BadRequest naming the invalid part when ``path`` has the shape of a registry API path."""
    loose = _LOOSE.match(path)
    if loose is None:
        return
    name = loose["name"]
    if not _NAME.match(name) or len(name) > 255:
        raise BadRequest(ErrorCode.NAME_INVALID, f"invalid repository name {shown(name)!r}")
    kind, ref = loose["kind"], loose["ref"]
    if kind == "manifests" and ref is not None and ":" not in ref:
        raise BadRequest(ErrorCode.MANIFEST_INVALID, f"invalid tag {shown(ref)!r}")
    if kind is not None and ref is not None:
        _check_digest(ref)
        raise BadRequest(ErrorCode.DIGEST_INVALID, f"invalid digest {shown(ref)!r}")
    upload = loose["upload"]
    if upload is not None:
        raise BadRequest(ErrorCode.BLOB_UPLOAD_INVALID, f"invalid upload id {shown(upload)!r}")
