"""The registry cache's storage engine: verified, content-addressed blobs and manifests (no HTTP here).

Design, in the order a request meets it:

* ``BlobCache`` (blobs.py) is the facade the registry API calls.  ``open_or_fill`` returns a
  ``BlobReader`` whose ``status`` says how it was served: HIT (a committed file), MISS (this request
  started the fill), COALESCED (joined a fill in flight) or BYPASS (streamed from upstream without
  storing, when the cap or the free-disk watermark cannot take the blob).
* Fills (fills.py) are single-flight per (registry, digest) and run in tasks the cache owns, so a
  client that goes away does not waste the download.  Bytes are hashed and counted as they stream
  into a temp object; readers (readers.py) follow that object from byte 0 at their own pace, reading
  bounded chunks off the loop, so no reader waits for the fill to finish and a slow reader never
  slows the fill.  Commit = fsync + atomic rename, only after digest and length matched; otherwise
  the temp object goes and every reader gets the IntegrityError/UpstreamError.  A reader reading to
  the end gets its last chunk only after that verdict, so no client ever completes a bad blob.
* ``BlobStore`` (blobstore.py) holds the bytes behind a small interface (temp object, commit,
  read at offset, delete, scan); ``FileBlobStore`` (filestore.py) is the filesystem one; the fleet's
  bucket implements it too (``appliance.fleet.store``), reached through the ``SharedTier`` of
  tiers.py, which the engine hands in: the cache never imports the fleet.
* ``CacheIndex`` (index.py) is the metadata: an SQLite file in WAL mode, used from one dedicated
  thread, never loaded whole.  Rows carry a state (pending/ready/deleting) written around every
  rename and unlink, so start-up repairs a crash by looking at those few rows only.
* ``Evictor`` (eviction.py) keeps committed + reserved bytes under a hard cap by deleting the least
  recently used unpinned entries that no reader or fill holds a lease on, and expires entries not
  touched for ``inactive`` seconds.
* ``ManifestCache`` (manifests.py) stores manifest bodies byte-exact in the same store and index
  (kind ``manifest``) and tag records keyed by (registry, repository, tag, accept_class).
* ``verify`` (verify.py) re-hashes every file and, with ``repair``, rebuilds the index from them.

Entries are keyed by (registry, kind, digest): one registry's blobs are never served for another,
and every repository of a registry shares the stored bytes; the ``refs`` table records which
repositories referenced each digest, for purge by image and for pinning, and the ``links`` table
which repositories the upstream vouched for each digest in (links.py), the only ones it is served in.

It may import `config` and the root vocabulary (`oci`, `events`, `stats`) and basics (`errors`,
`digests`, `tasks`, `memory`, `logsafe`); never `upstream` (a sibling: a fill gets its bytes through the
``FetchBlob`` the registry layer hands in), `registry` or anything above them.
"""

from appliance.cache.blobs import INDEX_FILE, BlobCache, CacheUsage
from appliance.cache.blobstore import BlobKey, BlobStore, Kind
from appliance.cache.eviction import Evictor, Leases
from appliance.cache.filestore import FileBlobStore
from appliance.cache.fill import BlobSource, FetchBlob, FillProgress
from appliance.cache.index import CacheIndex
from appliance.cache.index_records import RegistryUsage, RepositoryListing, TagRecord
from appliance.cache.manifests import ManifestCache, StoredManifest
from appliance.cache.readers import BlobReader
from appliance.cache.verify import VerifyReport, verify

__all__ = [
    "INDEX_FILE",
    "BlobCache",
    "BlobKey",
    "BlobReader",
    "BlobSource",
    "BlobStore",
    "CacheIndex",
    "CacheUsage",
    "Evictor",
    "FetchBlob",
    "FileBlobStore",
    "FillProgress",
    "Kind",
    "Leases",
    "ManifestCache",
    "RegistryUsage",
    "RepositoryListing",
    "StoredManifest",
    "TagRecord",
    "VerifyReport",
    "verify",
]
