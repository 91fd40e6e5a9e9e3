"""Mirror mode routing: which upstream registry a plain ``/v2/...`` request is for.

In order: containerd's ``?ns=<registry>``, then a ``/v2/<registry-host>/<repo>/...`` path prefix
(podman/CRI-O mirrors with a path, containerd ``override_path``), otherwise Docker Hub (Docker's
``registry-mirrors``).  Only configured registries are served; anything else is a fast 404 so the
client falls back to its next host.

A path prefix cannot hold a ``:`` (podman and CRI-O reject it in a mirror ``location``), so a
registry with a port is written ``host_PORT`` there (``registry.local_5000``); ``host:PORT`` is
accepted too, for clients that send it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode

from appliance import oci
from appliance.config.model import DOCKER_HUB_HOST, Config, RegistryConfig, normalize_host
from appliance.errors import ErrorCode, RegistryError

DOCKER_HUB_NAME = "docker.io"
_PORT_SUFFIX = re.compile(r"^(?P<host>.+)_(?P<port>\d{1,5})$")


class RouteVia(StrEnum):
    """How a mirror request named its registry."""

    NAMESPACE = "ns"
    PATH_PREFIX = "path"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class MirrorTarget:
    registry: RegistryConfig
    path: str  # the (decoded) path to ask the upstream for, checked by request_input before use
    query: tuple[tuple[str, str], ...]  # the query pairs to pass on, decoded
    via: RouteVia

    @property
    def path_qs(self) -> str:
        return self.path + (f"?{urlencode(self.query)}" if self.query else "")


def path_segment(name: str) -> str:
    """The path-prefix form of a registry name: ``host:5000`` -> ``host_5000``."""
    return name.replace(":", "_")


def is_bare_ping(path: str, query: Mapping[str, str]) -> bool:
    """``/v2/`` naming no registry: answered by the appliance itself.

    Clients ping a mirror before using it; with no registry named there is nothing to relay, and
    the appliance holds the upstream credentials, so the client needs no challenge.
    """
    return path in ("/v2", "/v2/") and not query.get("ns")


def route(config: Config, path: str, query: Iterable[tuple[str, str]] | Mapping[str, str]) -> MirrorTarget:
    """Route ``path`` (starting with ``/v2``) with its ``query``; RegistryError(404) if not served.

    ``query`` may be a multidict: every pair but ``ns`` is passed on, in order.
    """
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
    ns = next((value for key, value in pairs if key == "ns"), "")
    rest = path[len("/v2") :] or "/"
    first, _, after = rest.lstrip("/").partition("/")
    registry: RegistryConfig | None
    if ns:
        registry = _registry_named(config, ns)
        if registry is None:
            raise _not_served(ns)
        via = RouteVia.NAMESPACE
        # containerd with ``override_path`` sends the registry in the path as well as in ns.
        if after and _registry_named(config, first) == registry:
            rest = "/" + after
    elif after and _looks_like_host(first):
        registry = _registry_named(config, first)
        if registry is None:
            raise _not_served(first)
        via = RouteVia.PATH_PREFIX
        rest = "/" + after
    else:
        registry = config.registry_for(DOCKER_HUB_NAME)
        if registry is None:
            raise _not_served(DOCKER_HUB_NAME)
        via = RouteVia.DEFAULT
    upstream_path = "/v2" + rest
    if registry.host == DOCKER_HUB_HOST:
        upstream_path = _official_image_path(upstream_path)
    kept = tuple((key, value) for key, value in pairs if key != "ns")
    return MirrorTarget(registry, upstream_path, kept, via)


def _registry_named(config: Config, name: str) -> RegistryConfig | None:
    registry = config.registry_for(name)
    if registry is not None:
        return registry
    match = _PORT_SUFFIX.match(name)
    if match is None:
        return None
    return config.registry_for(f"{match['host']}:{match['port']}")


def _looks_like_host(segment: str) -> bool:
    # Docker's own rule for telling a registry host from a repository path component, plus our
    # ``host_PORT`` spelling of ``host:PORT``.
    name = normalize_host(segment)
    match = _PORT_SUFFIX.match(name)
    if match is not None:
        name = match["host"]
    return "." in name or ":" in name or name == "localhost"


def _official_image_path(path: str) -> str:
    """``/v2/alpine/...`` -> ``/v2/library/alpine/...``: Docker Hub only knows the long name."""
    route = oci.parse_route(path)
    if not route.repository or "/" in route.repository:
        return path
    prefix = f"/v2/{route.repository}/"
    return f"/v2/library/{route.repository}/" + path[len(prefix) :]


def _not_served(name: str) -> RegistryError:
    return RegistryError(404, ErrorCode.NAME_UNKNOWN, f"registry {name} is not served by this appliance")
