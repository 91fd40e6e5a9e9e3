"""ManifestCache: byte-exact bodies by digest, tag records per Accept class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cache import BlobCache, ManifestCache
from appliance.errors import IntegrityError
from tests.cache.conftest import CacheFactory
from tests.cache.helpers import REG, REPO, sha256

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
# Odd spacing on purpose: the body must come back byte for byte, not re-serialized.
INDEX_BODY = (
    b'{"schemaVersion": 2,  "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}\n'
)
DOCKER_BODY = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_V2, "layers": []}, indent=3).encode()


async def _manifests(make_cache: CacheFactory, **kwargs: object) -> tuple[BlobCache, ManifestCache]:
    cache = await make_cache(**kwargs)
    return cache, ManifestCache(cache)


async def test_body_comes_back_byte_exact_with_its_media_type(make_cache: CacheFactory) -> None:
    _, manifests = await _manifests(make_cache)
    assert await manifests.put(REG, REPO, sha256(INDEX_BODY), OCI_INDEX, INDEX_BODY)
    stored = await manifests.get_by_digest(REG, sha256(INDEX_BODY))
    assert stored is not None
    assert (stored.body, stored.media_type, stored.digest, stored.size) == (
        INDEX_BODY,
        OCI_INDEX,
        sha256(INDEX_BODY),
        len(INDEX_BODY),
    )
    assert await manifests.get_by_digest("other.example", sha256(INDEX_BODY)) is None


async def test_body_not_matching_its_digest_is_refused(make_cache: CacheFactory) -> None:
    cache, manifests = await _manifests(make_cache)
    with pytest.raises(IntegrityError, match="hashes to"):
        await manifests.put(
            REG, REPO, sha256(INDEX_BODY), OCI_INDEX, DOCKER_BODY, tag="latest", accept_class="x"
        )
    assert await manifests.get_by_digest(REG, sha256(INDEX_BODY)) is None
    assert await manifests.get_tag(REG, REPO, "latest", "x") is None
    assert (await cache.usage()).entries == 0


async def test_manifest_over_4_mib_is_refused_with_its_size(make_cache: CacheFactory) -> None:
    _, manifests = await _manifests(make_cache)
    big = b" " * (4 * 1024 * 1024 + 1)
    with pytest.raises(IntegrityError, match="4194305 bytes, over the 4194304 byte limit"):
        await manifests.put(REG, REPO, sha256(big), DOCKER_V2, big)


async def test_tag_records_are_kept_per_accept_class(make_cache: CacheFactory) -> None:
    _, manifests = await _manifests(make_cache)
    await manifests.put(REG, REPO, sha256(INDEX_BODY), OCI_INDEX, INDEX_BODY, tag="1.0", accept_class="oci")
    await manifests.put(REG, REPO, sha256(DOCKER_BODY), DOCKER_V2, DOCKER_BODY, tag="1.0", accept_class="v2")
    oci = await manifests.get_tag(REG, REPO, "1.0", "oci")
    v2 = await manifests.get_tag(REG, REPO, "1.0", "v2")
    assert oci is not None and (oci.digest, oci.media_type, oci.size) == (
        sha256(INDEX_BODY),
        OCI_INDEX,
        len(INDEX_BODY),
    )
    assert v2 is not None and (v2.digest, v2.media_type) == (sha256(DOCKER_BODY), DOCKER_V2)
    assert await manifests.get_tag(REG, REPO, "1.0", "other") is None
    assert await manifests.get_tag(REG, "another/repo", "1.0", "oci") is None


async def test_touch_tag_refreshes_fetched_at(make_cache: CacheFactory) -> None:
    now = [100.0]
    _, manifests = await _manifests(make_cache, clock=lambda: now[0])
    await manifests.put(REG, REPO, sha256(INDEX_BODY), OCI_INDEX, INDEX_BODY, tag="latest", accept_class="a")
    now[0] = 500.0
    assert await manifests.touch_tag(REG, REPO, "latest", "a")
    record = await manifests.get_tag(REG, REPO, "latest", "a")
    assert record is not None and record.fetched_at == 500.0
    assert not await manifests.touch_tag(REG, REPO, "nope", "a")


async def test_manifests_and_tags_survive_a_restart(make_cache: CacheFactory, tmp_path: Path) -> None:
    cache, manifests = await _manifests(make_cache)
    await manifests.put(
        REG, REPO, sha256(DOCKER_BODY), DOCKER_V2, DOCKER_BODY, tag="latest", accept_class="v2"
    )
    await cache.close()
    again = ManifestCache(await make_cache())
    stored = await again.get_by_digest(REG, sha256(DOCKER_BODY))
    assert stored is not None and stored.body == DOCKER_BODY
    assert await again.get_tag(REG, REPO, "latest", "v2") is not None


async def test_purging_a_repository_removes_its_manifests_and_tags(make_cache: CacheFactory) -> None:
    cache, manifests = await _manifests(make_cache)
    await manifests.put(REG, REPO, sha256(INDEX_BODY), OCI_INDEX, INDEX_BODY, tag="latest", accept_class="a")
    assert await cache.purge(registry=REG, repository=REPO) == 1
    assert await manifests.get_by_digest(REG, sha256(INDEX_BODY)) is None
    assert await manifests.get_tag(REG, REPO, "latest", "a") is None


async def test_manifests_count_against_the_cap_and_are_skipped_when_they_cannot_fit(
    make_cache: CacheFactory,
) -> None:
    cache, manifests = await _manifests(make_cache, max_size=len(INDEX_BODY))
    assert not await manifests.put(REG, REPO, sha256(DOCKER_BODY), DOCKER_V2, DOCKER_BODY)
    assert await manifests.put(REG, REPO, sha256(INDEX_BODY), OCI_INDEX, INDEX_BODY)
    assert (await cache.usage()).bytes == len(INDEX_BODY)
