"""Cache actions over the socket: the image listing, purge, pin and verify, each request and result."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.protocol.codec import Payload, ProtocolError


@dataclass(frozen=True, slots=True)
class ImageEntry(Payload):
    registry: str
    repository: str
    pinned: bool
    size: int
    blobs: int
    last_access: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageList(Payload):
    images: tuple[ImageEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class PurgeRequest(Payload):
    """Purge an image (registry + repository), a registry, one digest, or with ``all`` everything."""

    registry: str | None = None
    repository: str | None = None
    digest: str | None = None
    all: bool = False

    def check(self) -> None:
        if self.all and (self.registry or self.repository or self.digest):
            raise ProtocolError("purge: 'all' cannot be combined with a registry, repository or digest")
        if not self.all and not (self.registry or self.digest):
            raise ProtocolError("purge: name a registry (and optionally a repository), a digest, or all")
        if self.repository and not self.registry:
            raise ProtocolError("purge: a repository needs its registry")


@dataclass(frozen=True, slots=True)
class PurgeResult(Payload):
    removed: int


@dataclass(frozen=True, slots=True)
class PinRequest(Payload):
    registry: str
    repository: str
    pinned: bool = True


@dataclass(frozen=True, slots=True)
class PinResult(Payload):
    entries: int


@dataclass(frozen=True, slots=True)
class VerifyRequest(Payload):
    repair: bool = False


@dataclass(frozen=True, slots=True)
class VerifyResult(Payload):
    consistent: bool
    repaired: bool
    checked: int
    rows: int
    summary: str
    corrupt: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    orphans: tuple[str, ...] = ()
    unfinished: tuple[str, ...] = ()
    strays: tuple[str, ...] = ()
    loose: tuple[str, ...] = ()  # paths that were (or are) readable by other users
