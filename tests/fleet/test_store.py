"""S3BlobStore against a real SeaweedFS: nothing visible before commit, never over an object, scans."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from appliance.cache.blobstore import BlobKey, Kind
from appliance.digests import Algorithm, digest_of
from appliance.fleet.bucket import Bucket, BucketError
from appliance.fleet.store import SHARED_REGISTRY, S3BlobStore, S3TempBlob, object_name, parse_object_name
from tests.fixtures.s3_strip_proxy import StripProxy
from tests.fixtures.seaweedfs import SeaweedS3, bucket_keys, pending_uploads

PART = 5 * 1024 * 1024  # S3's smallest part: the store's 8 MiB would make these tests slow


@pytest.fixture
async def store(s3_server: SeaweedS3) -> AsyncIterator[S3BlobStore]:
    async with Bucket(s3_server.fleet_config()) as bucket:
        yield S3BlobStore(bucket)


def key_of(data: bytes, kind: Kind = Kind.BLOB) -> BlobKey:
    return BlobKey.of("registry.test", kind, digest_of(data))


def test_object_names_are_content_addressed_and_parse_back() -> None:
    digest = digest_of(b"x")
    assert object_name(Kind.BLOB, digest) == f"blobs/sha256/{digest.hex}"
    assert object_name(Kind.MANIFEST, digest) == f"manifests/sha256/{digest.hex}"
    assert parse_object_name(f"blobs/sha256/{digest.hex}") == (Kind.BLOB, digest)
    for name in (
        "blobs/sha256/xyz",
        "tags/a/b",
        f"blobs/md5/{digest.hex}",
        f"leases/blob/sha256/{digest.hex}",
    ):
        assert parse_object_name(name) is None


async def test_a_large_temp_object_is_a_multipart_upload_visible_only_after_commit(
    store: S3BlobStore, s3_server: SeaweedS3
) -> None:
    data = bytes(range(256)) * (3 * PART // 256 + 1000)
    key = key_of(data)
    temp = S3TempBlob(store.bucket, store.name(key), part_size=PART)
    hasher = key.digest.hasher()
    for start in range(0, len(data), 1_000_000):
        await temp.write(data[start : start + 1_000_000], hasher.update)
    assert hasher.matches(key.digest)
    assert not await store.exists(key)
    assert pending_uploads(s3_server, store.bucket.location.prefix) == [store.bucket.key(store.name(key))]
    await temp.commit()
    reader = await store.open(key)
    assert reader is not None and reader.size == len(data)
    assert await reader.read_at(PART - 3, 6) == data[PART - 3 : PART + 3]
    assert await store.hash(key, Algorithm.SHA256) == key.digest
    assert pending_uploads(s3_server, store.bucket.location.prefix) == []


async def test_a_small_temp_object_is_one_put_and_a_discarded_one_leaves_nothing(
    store: S3BlobStore, s3_server: SeaweedS3
) -> None:
    small = b"small blob"
    temp = await store.create_temp(key_of(small))
    await temp.write(small)
    await temp.commit()
    assert await store.exists(key_of(small))

    big = b"b" * (PART + 10)
    dropped = S3TempBlob(store.bucket, store.name(key_of(big)), part_size=PART)
    await dropped.write(big)
    await dropped.discard()
    assert not await store.exists(key_of(big))
    assert pending_uploads(s3_server, store.bucket.location.prefix) == []


async def test_commit_never_overwrites_an_object_already_published(store: S3BlobStore) -> None:
    data = b"c" * (PART + 5)
    key = key_of(data)
    await store.bucket.put(store.name(key), b"published first")
    temp = S3TempBlob(store.bucket, store.name(key), part_size=PART)
    await temp.write(data)
    await temp.commit()  # refused by If-None-Match: ours is dropped, not an error
    assert (await store.bucket.get(store.name(key)))[1] == b"published first"


async def test_scan_lists_blobs_and_manifests_and_strays_are_reported(
    store: S3BlobStore, s3_server: SeaweedS3
) -> None:
    blob, manifest = b"layer bytes", b'{"schemaVersion":2}'
    await store.put_small(key_of(blob), blob)
    await store.put_small(key_of(manifest, Kind.MANIFEST), manifest)
    await store.put_small(key_of(blob), blob)  # again: content-addressed, already there
    await store.bucket.put("blobs/sha256/not-a-digest", b"?")
    found = {(obj.key.kind, str(obj.key.digest), obj.size) async for obj in store.scan()}
    assert found == {
        (Kind.BLOB, str(digest_of(blob)), len(blob)),
        (Kind.MANIFEST, str(digest_of(manifest)), len(manifest)),
    }
    assert {obj.key.registry async for obj in store.scan()} == {SHARED_REGISTRY}
    assert await store.strays(remove=True) == ["blobs/sha256/not-a-digest"]
    assert store.bucket.key("blobs/sha256/not-a-digest") not in bucket_keys(
        s3_server, store.bucket.location.prefix
    )
    await store.delete(key_of(blob))
    assert not await store.exists(key_of(blob))
    assert hashlib.sha256(blob).hexdigest() == digest_of(blob).hex


async def test_a_failing_upload_raises_in_the_writer_instead_of_stalling_it(s3_server: SeaweedS3) -> None:
    proxy = StripProxy(s3_server, [])  # the bucket, until the proxy stops mid-upload
    await proxy.start()
    async with Bucket(s3_server.fleet_config(endpoint=proxy.endpoint)) as bucket:
        temp = S3TempBlob(bucket, "blobs/sha256/" + "d" * 64, part_size=PART)
        await temp.write(b"x" * PART)  # the upload exists, its first part is queued
        await proxy.close()
        with pytest.raises(BucketError):
            async with asyncio.timeout(30):
                for _ in range(8):  # more parts than the queue holds
                    await temp.write(b"y" * PART)
        await temp.discard()
