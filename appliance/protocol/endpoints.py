"""The API version and its endpoint paths (all JSON over HTTP/1.1 on the Unix socket)."""

from __future__ import annotations

API_VERSION = 1
PREFIX = f"/v{API_VERSION}"

# EVENTS is a WebSocket; every other endpoint answers one JSON body.
STATUS = f"{PREFIX}/status"
STATS = f"{PREFIX}/stats"
INFLIGHT = f"{PREFIX}/inflight"
EVENTS = f"{PREFIX}/events"
CONFIG = f"{PREFIX}/config"
CONFIG_ENV = f"{PREFIX}/config/env"
CONFIG_RELOAD = f"{PREFIX}/config/reload"
REGISTRIES = f"{PREFIX}/config/registries"  # POST add; PATCH/DELETE .../{host}
CREDENTIALS = f"{PREFIX}/config/credentials"  # PUT set; DELETE ?scope=
ACCESS = f"{PREFIX}/access"  # GET the view
ACCESS_USERS = f"{PREFIX}/access/users"  # POST add; PATCH/DELETE .../{name}
ACCESS_TOKENS = f"{PREFIX}/access/tokens"  # POST add; DELETE .../{id}
ACCESS_ACL = f"{PREFIX}/access/acl"  # POST add; PATCH (move) / DELETE .../{index}
ACCESS_CHECK = f"{PREFIX}/access/check"  # POST: what the ACL decides
CACHE_IMAGES = f"{PREFIX}/cache/images"
CACHE_PURGE = f"{PREFIX}/cache/purge"
CACHE_PIN = f"{PREFIX}/cache/pin"
CACHE_VERIFY = f"{PREFIX}/cache/verify"


def registry_path(host: str) -> str:
    return f"{REGISTRIES}/{host}"
