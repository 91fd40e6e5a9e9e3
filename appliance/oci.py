"""Pure helpers for the OCI distribution API: routes, media types, Accept negotiation, errors.

No I/O here: everything is a function of its arguments, tested without an event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from appliance.errors import ErrorCode, RegistryError

DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2)
# What the engine asks an upstream for when it fetches on its own (prefetch, digest fetches).
FULL_ACCEPT = ", ".join(MANIFEST_TYPES)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")

# Repository name grammar from the distribution spec (path components separated by "/").
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
_ROUTE = re.compile(
    rf"^/v2/(?P<name>{_NAME})/(?:"
    rf"(?P<manifests>manifests)/(?P<mref>{_TAG}|{_DIGEST})"
    rf"|(?P<blobs>blobs)/(?P<bdigest>{_DIGEST})"
    r"|(?P<uploads>blobs/uploads)(?:/(?P<upload_id>[^/]*))?"
    r"|(?P<tags>tags/list)"
    rf"|(?P<referrers>referrers)/(?P<rdigest>{_DIGEST})"
    r")$"
)
_TAG_RE = re.compile(rf"^{_TAG}$")


class Endpoint(StrEnum):
    PING = "ping"  # /v2/
    MANIFEST = "manifest"
    BLOB = "blob"
    UPLOAD = "upload"
    TAGS = "tags"
    REFERRERS = "referrers"
    CATALOG = "catalog"
    V1 = "v1"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Route:
    endpoint: Endpoint
    repository: str = ""
    reference: str = ""  # tag or digest (manifests), digest (blobs, referrers), upload id

    @property
    def is_digest(self) -> bool:
        return ":" in self.reference


def parse_route(path: str) -> Route:
    """Map a request path (without query) to the registry endpoint it addresses."""
    if path in ("/v2", "/v2/"):
        return Route(Endpoint.PING)
    if path == "/v2/_catalog":
        return Route(Endpoint.CATALOG)
    if path == "/v1" or path.startswith("/v1/"):
        return Route(Endpoint.V1)
    match = _ROUTE.match(path)
    if match is None:
        return Route(Endpoint.OTHER)
    name = match["name"]
    if match["manifests"]:
        return Route(Endpoint.MANIFEST, name, match["mref"])
    if match["blobs"]:
        return Route(Endpoint.BLOB, name, match["bdigest"])
    if match["uploads"]:
        return Route(Endpoint.UPLOAD, name, match["upload_id"] or "")
    if match["tags"]:
        return Route(Endpoint.TAGS, name)
    return Route(Endpoint.REFERRERS, name, match["rdigest"])


def is_tag(reference: str) -> bool:
    return _TAG_RE.match(reference) is not None


def parse_accept(header_values: list[str]) -> tuple[str, ...]:
    """Media types a client accepts, in order, without parameters; ``*/*`` kept."""
    types: list[str] = []
    for value in header_values:
        for part in value.split(","):
            media = part.split(";", 1)[0].strip().lower()
            if media and media not in types:
                types.append(media)
    return tuple(types)


def accept_class(accepted: tuple[str, ...]) -> str:
    """The representation class a client's Accept list selects, used in the tag-cache key.

    Two clients get the same cached tag manifest only if they accept the same set of manifest
    media types; so an OCI index is never served to a client that asked for Docker v2 only.
    A client sending no manifest types (or only ``*/*``) historically gets Docker v2 schema 2
    from Docker Hub - it is its own class.
    """
    known = sorted(t for t in accepted if t in MANIFEST_TYPES)
    if not known:
        return "default"
    return ",".join(known)


def accepts(accepted: tuple[str, ...], media_type: str) -> bool:
    """Whether a stored manifest of ``media_type`` may be served to a client with this Accept list."""
    if not accepted or "*/*" in accepted:
        return True
    return media_type in accepted


def manifest_media_type(body: bytes, header: str | None) -> str:
    """The manifest's media type: the upstream Content-Type without parameters, else its mediaType."""
    if header:
        media = header.split(";", 1)[0].strip()
        if media and media not in ("application/json", "text/plain", "application/octet-stream"):
            return media
    match = re.search(rb'"mediaType"\s*:\s*"([^"]+)"', body[:4096])
    if match:
        return match.group(1).decode("ascii", "replace")
    return header.split(";", 1)[0].strip() if header else OCI_MANIFEST


def error(status: int, code: ErrorCode, message: str, **headers: str) -> RegistryError:
    return RegistryError(status, code, message, headers=headers or None)


def push_disabled(method: str, registry: str) -> RegistryError:
    return RegistryError(
        405,
        ErrorCode.UNSUPPORTED,
        f"{method} is not allowed: pushing through the appliance is disabled for {registry}; "
        "set ALLOW_PUSH=true (or allow_push = true in the config, globally or for this registry)",
    )


def v1_refused(host: str) -> RegistryError:
    return RegistryError(
        405,
        ErrorCode.UNSUPPORTED,
        f"the Docker registry v1 API is not supported; {host} is served over v2 only "
        "(an image missing or credentials not configured for this registry can also lead here)",
    )
