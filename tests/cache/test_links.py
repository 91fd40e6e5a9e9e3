"""Per-repository links: what a manifest lists, the ``links`` table on new and old index files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from appliance import oci
from appliance.cache import ManifestCache
from appliance.cache.links import referenced_digests
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, Upstream, payload, sha256

CONFIG, LAYER1, LAYER2 = (sha256(str(n).encode()) for n in range(3))


def test_an_image_manifest_lists_its_config_and_layers_and_an_index_its_children() -> None:
    image = {
        "config": {"digest": CONFIG},
        "layers": [{"digest": LAYER1}, {"digest": LAYER2, "urls": ["https://x"]}, {"digest": LAYER1}],
    }
    body = json.dumps(image).encode()
    assert referenced_digests(body, oci.OCI_MANIFEST) == (CONFIG, LAYER1, LAYER2)
    assert referenced_digests(body, oci.DOCKER_MANIFEST_V2) == (CONFIG, LAYER1, LAYER2)
    index = json.dumps({"manifests": [{"digest": LAYER1}, {"digest": 5}, "junk"]}).encode()
    assert referenced_digests(index, oci.OCI_INDEX) == (LAYER1,)
    assert referenced_digests(index, oci.DOCKER_MANIFEST_LIST) == (LAYER1,)
    schema1 = json.dumps({"fsLayers": [{"blobSum": LAYER2}]}).encode()
    assert referenced_digests(schema1, oci.DOCKER_MANIFEST_V1_SIGNED) == (LAYER2,)
    assert referenced_digests(b"not json", oci.OCI_MANIFEST) == ()
    assert referenced_digests(b"[1]", oci.OCI_INDEX) == ()
    assert referenced_digests(body, "application/octet-stream") == ()


async def test_a_served_manifest_links_its_repository_to_itself_and_what_it_lists(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache()
    manifests = ManifestCache(cache)
    body = json.dumps({"config": {"digest": CONFIG}, "layers": [{"digest": LAYER1}]}).encode()
    manifests.link(REG, REPO, sha256(body), body, oci.OCI_MANIFEST)
    for digest in (sha256(body), CONFIG, LAYER1):
        assert await cache.index.is_linked(REG, REPO, digest)
    assert not await cache.index.is_linked(REG, REPO, LAYER2)
    assert not await cache.index.is_linked(REG, "other/repo", LAYER1)
    # A purge of the repository drops its links; the manifest served again links them again.
    await cache.purge(registry=REG, repository=REPO)
    assert not await cache.index.is_linked(REG, REPO, LAYER1)
    manifests.link(REG, REPO, sha256(body), body, oci.OCI_MANIFEST)
    assert await cache.index.is_linked(REG, REPO, LAYER1)


async def test_an_index_from_before_links_gains_the_table_and_keeps_its_entries(
    make_cache: CacheFactory, tmp_path: Path
) -> None:
    directory = tmp_path / "old-cache"
    cache = await make_cache(directory=directory)
    data = payload(10_000)
    reader = await cache.open_or_fill(REG, REPO, sha256(data), Upstream(data).fetch)
    await reader.close()
    await cache.wait_fills()
    await cache.close()
    # Rewind the file to the schema before links: the table is dropped, as an old appliance left it.
    db = sqlite3.connect(directory / "index.sqlite")
    db.execute("DROP TABLE links")
    assert "links" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()

    reopened = await make_cache(directory=directory)
    assert not await reopened.index.is_linked(REG, REPO, sha256(data))  # no link is invented
    [listing] = await reopened.list_images()  # `cache ls`
    assert listing.repository == REPO and [b.digest for b in listing.blobs] == [sha256(data)]
    report = await reopened.verify()  # `cache verify`
    assert report.consistent, report.summary()
    await reopened.index.add_links(REG, REPO, [sha256(data)])
    assert await reopened.index.is_linked(REG, REPO, sha256(data))


async def test_an_evicted_blob_takes_its_links_along(make_cache: CacheFactory, tmp_path: Path) -> None:
    directory = tmp_path / "evicting"
    cache = await make_cache(directory=directory)
    kept, evicted = payload(5_000, seed=1), payload(5_000, seed=2)
    for data in (kept, evicted):
        reader = await cache.open_or_fill(REG, REPO, sha256(data), Upstream(data).fetch)
        await reader.close()
    await cache.wait_fills()
    await cache.index.add_links(REG, REPO, [sha256(kept), sha256(evicted)])
    [entry] = [e for e in await cache.index.lru(10) if str(e.key.digest) == sha256(evicted)]
    await cache.evictor.delete([entry], force=True)
    await cache.close()
    reopened = await make_cache(directory=directory)  # the file's rows, not this process's memory
    assert await reopened.index.is_linked(REG, REPO, sha256(kept))
    assert not await reopened.index.is_linked(REG, REPO, sha256(evicted))
