"""``SharedTier``: a tier below this replica's disk that a fill asks before the upstream (the fleet's bucket).

A blob GET meets the tiers in this order: the local disk (a HIT), a local fill in flight (joined),
then a new local fill, whose bytes the shared tier provides: from the shared store if it holds the
blob, else from whichever replica fills it now, else from the upstream (this replica filling it for
everyone).  The local fill still tees the bytes into the disk cache and checks the digest before the
last byte reaches a client, so the shared tier is only ever a source of bytes, never trusted.

The fleet (``appliance.fleet``) implements this; the engine hands it to ``BlobCache`` (the cache never
imports the fleet).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable

from appliance.cache.blobstore import BlobKey
from appliance.cache.fill import FetchBlob
from appliance.digests import Digest

# Asks the upstream whether the repository may have the blob (a HEAD), raising its answer if not.
Confirm = Callable[[], Awaitable[None]]

# Asks the upstream for a tag (a HEAD): (digest, media type), raising when its answer is not one to
# share with other replicas (an error status, no answer): the caller then decides from its own.
CheckTag = Callable[[], Awaitable[tuple[str, str]]]


class SharedTier(abc.ABC):
    """Where a fill of this replica gets its bytes when a shared tier sits below the disk cache."""

    @abc.abstractmethod
    def source(self, key: BlobKey, repository: str, fetch: FetchBlob, confirm: Confirm | None) -> FetchBlob:
        """The fetch a new local fill of ``key`` uses instead of ``fetch`` (the upstream GET).

        ``confirm`` is None when the upstream already vouched for ``repository`` having the blob;
        otherwise bytes this replica did not fetch itself for ``repository`` may be served only
        after it succeeded (or after the shared tier knows the upstream vouched elsewhere).
        """

    @abc.abstractmethod
    async def manifest(self, digest: Digest) -> tuple[bytes, str] | None:
        """A manifest body by digest (checked against it) and its media type, or None.

        Whether a repository may be served it is the caller's question, as for a local hit.
        """

    @abc.abstractmethod
    def publish_manifest(self, digest: Digest, media_type: str, body: bytes) -> None:
        """Share a manifest body the upstream sent (in the background; failures only logged)."""

    async def refresh_tag(
        self,
        registry: str,
        repository: str,
        tag: str,
        accept_class: str,
        check: CheckTag,
        *,
        fresh_for: float,
    ) -> str:
        """The digest the upstream names for ``tag`` (for clients of ``accept_class``) now.

        At most ``fresh_for`` seconds old; a shared tier may answer with what another replica's
        ``check`` heard, so that replicas whose tag went stale together ask the upstream once.
        Whatever ``check`` raises reaches the caller.  Without sharing: ``check`` itself.
        """
        digest, _ = await check()
        return digest

    def accessed(self, digest: Digest) -> None:  # noqa: B027 - optional hook, empty by design
        """This replica served ``digest`` from its own disk (the fleet's LRU counts L1 hits too)."""
