"""Pull-ahead: once a client starts on an image's layers, fetch the rest into the cache at once.

Clients fetch layers a few at a time (containerd and Docker three, skopeo often one after the
other), and on a cold cache each request pays the upstream's latency in turn.  When a client asks
for a layer of an image manifest the appliance served moments ago, the manifest's other blobs are
filled in the background, ``per_image`` at a time, through the cache's ordinary single-flight,
digest-verified fills: by the time the client asks for them they are on their way or done.

Only a layer request that misses the cache starts it (a warm pull costs nothing extra).  A
manifest fetched on its own, or with its config blob (an inspection such as ``skopeo inspect``, a
scanner, an update check), downloads nothing.  A blob the cache would not store (over the cap,
disk low) is not fetched, nor is a foreign layer (one a manifest lists by URL).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance import oci
from appliance.cache import BlobCache, FetchBlob
from appliance.errors import ApplianceError
from appliance.events import CacheStatus, Event, EventBus, RequestKind
from appliance.tasks import OwnedTasks

log = logging.getLogger(__name__)

_IMAGE_MANIFESTS = (oci.OCI_MANIFEST, oci.DOCKER_MANIFEST_V2)
_PARSED_KEPT = 1024  # manifests whose blob lists are kept


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob an image manifest lists: its config or one of its layers."""

    digest: str
    size: int | None
    layer: bool = True  # False for the config blob, which never starts a pull-ahead


def blobs_of(body: bytes, media_type: str) -> tuple[Blob, ...]:
    """The config and layers of an image manifest, in order; () for an index or anything unreadable."""
    if media_type not in _IMAGE_MANIFESTS:
        return ()
    try:
        document = json.loads(body)
    except ValueError:
        return ()
    if not isinstance(document, dict):
        return ()
    layers = document.get("layers")
    descriptors = [(document.get("config"), False)]
    descriptors += [(layer, True) for layer in layers] if isinstance(layers, list) else []
    found: dict[str, Blob] = {}  # a layer listed twice is fetched once
    for descriptor, is_layer in descriptors:
        if not isinstance(descriptor, dict) or descriptor.get("urls"):
            continue  # malformed, or a foreign layer served from elsewhere
        digest = descriptor.get("digest")
        size = descriptor.get("size")
        if isinstance(digest, str) and ":" in digest and digest not in found:
            found[digest] = Blob(digest, size if isinstance(size, int) and size >= 0 else None, is_layer)
    return tuple(found.values())


# The "client" of the events pull-ahead publishes: what it fetched shows in the access log, the
# stream and the counters as upstream traffic, and the client's own requests for those blobs then
# show as HIT or COALESCED.
CLIENT = "pull-ahead"


@dataclass(eq=False)
class _Image:
    registry: str
    repository: str
    manifest: str
    blobs: tuple[Blob, ...]
    noted: float
    started: bool = False


class PullAhead:
    """Remembers recently served image manifests and fills the rest of one when a client starts."""

    def __init__(
        self,
        blobs: BlobCache,
        *,
        per_image: int,
        events: EventBus | None = None,
        remember: int = 8192,
        window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._blobs = blobs
        self._events = events
        self.per_image = per_image
        self._remember = remember  # (registry, repository, blob) keys kept, oldest forgotten first
        self._window = window  # seconds after the manifest was served that a blob request counts
        self._clock = clock
        self._images: collections.OrderedDict[tuple[str, str, str], _Image] = collections.OrderedDict()
        # Blob lists by manifest digest: a manifest served again (every pull of a tag) is not parsed
        # again, which was most of this bookkeeping's cost on the request path (21 -> 2.5 us).
        self._parsed: collections.OrderedDict[str, tuple[Blob, ...]] = collections.OrderedDict()
        self._tasks = OwnedTasks()
        self.fetched = 0  # blobs stored by pull-ahead since start

    @property
    def enabled(self) -> bool:
        return self.per_image > 0

    def note_manifest(
        self, registry: str, repository: str, digest: str, body: bytes, media_type: str
    ) -> None:
        """A manifest was served to a client: remember which blobs belong together."""
        if not self.enabled:
            return
        blobs = self._parsed.get(digest)
        if blobs is None:
            blobs = blobs_of(body, media_type)  # the digest names the body: parsed once
            self._parsed[digest] = blobs
            if len(self._parsed) > _PARSED_KEPT:
                self._parsed.popitem(last=False)
        if len(blobs) < 2:
            return
        image = _Image(registry, repository, digest, blobs, self._clock())
        for blob in blobs:
            if not blob.layer:
                continue
            key = (registry, repository, blob.digest)
            self._images[key] = image
            self._images.move_to_end(key)
        while len(self._images) > self._remember:
            self._images.popitem(last=False)

    def on_blob(
        self, registry: str, repository: str, digest: str, fetch_for: Callable[[str], FetchBlob]
    ) -> None:
        """A client asked for a blob: if it is a layer of a manifest just served, fill the others."""
        image = self._images.get((registry, repository, digest))
        if image is None or image.started or self._clock() - image.noted > self._window:
            return
        image.started = True
        others = [blob for blob in image.blobs if blob.digest != digest]
        self._tasks.spawn(
            self._fill(image, others, fetch_for), name=f"pull-ahead {registry}/{repository}@{image.manifest}"
        )

    async def _fill(self, image: _Image, blobs: list[Blob], fetch_for: Callable[[str], FetchBlob]) -> None:
        slots = asyncio.Semaphore(self.per_image)

        async def one(blob: Blob) -> int:
            async with slots:
                started = time.monotonic()
                try:
                    size = await self._blobs.warm(
                        image.registry,
                        image.repository,
                        blob.digest,
                        fetch_for(blob.digest),
                        expected_size=blob.size,
                    )
                except (ApplianceError, OSError) as exc:
                    # The client's own request for it will meet (and report) the same trouble.
                    log.info("pull-ahead of %s %s stopped: %s", image.registry, blob.digest, exc)
                    return 0
                except Exception as exc:  # whatever else a fetch raised: the others go on
                    log.info(
                        "pull-ahead of %s %s stopped: %s", image.registry, blob.digest, type(exc).__name__
                    )
                    return 0
                if size and self._events is not None:
                    self._events.publish(_fetched_event(image, blob.digest, size, time.monotonic() - started))
                return size

        stored = await asyncio.gather(*(one(blob) for blob in blobs))
        count = sum(1 for size in stored if size)
        self.fetched += count
        if count:
            log.info(
                "pull-ahead: %d of %d blobs of %s/%s@%s fetched before the client asked",
                count,
                len(blobs),
                image.registry,
                image.repository,
                image.manifest,
            )

    @property
    def running(self) -> int:
        """Pull-aheads in progress."""
        return len(self._tasks)

    async def wait_idle(self) -> None:
        """Wait until every pull-ahead started so far has finished (tests, orderly shutdown)."""
        await self._tasks.wait_idle()

    async def close(self) -> None:
        await self._tasks.cancel_all()


def _fetched_event(image: _Image, digest: str, size: int, duration: float) -> Event:
    return Event(
        time=time.time(),
        client=CLIENT,
        registry=image.registry,
        repository=image.repository,
        kind=RequestKind.BLOB,
        reference=digest,
        status=CacheStatus.MISS,
        bytes=size,
        duration=duration,
        upstream_status=200,
        message=f"fetched ahead of the client (manifest {image.manifest})",
    )
