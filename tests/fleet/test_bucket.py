"""The bucket wrapper against a real SeaweedFS: conditional writes, ranges, listings, multipart uploads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from appliance.fleet.bucket import MIN_PART, Bucket, BucketError, NotFound, PreconditionFailed
from tests.fixtures.seaweedfs import TOKEN, SeaweedS3, bucket_keys, pending_uploads


@pytest.fixture
async def bucket(s3_server: SeaweedS3) -> AsyncIterator[Bucket]:
    async with Bucket(s3_server.fleet_config()) as opened:
        yield opened


async def test_create_refuses_an_existing_name_and_keeps_the_first_object(bucket: Bucket) -> None:
    await bucket.create("leases/blob/a.json", b"first")
    with pytest.raises(PreconditionFailed) as caught:
        await bucket.create("leases/blob/a.json", b"second")
    assert caught.value.status == 412
    assert (await bucket.get("leases/blob/a.json"))[1] == b"first"


async def test_only_one_of_many_concurrent_creates_wins(bucket: Bucket) -> None:
    async def attempt(i: int) -> bool:
        try:
            await bucket.create("race", f"{i}".encode())
        except PreconditionFailed:
            return False
        return True

    assert sum(await asyncio.gather(*(attempt(i) for i in range(20)))) == 1


async def test_replace_and_delete_hold_only_for_the_etag_read(bucket: Bucket) -> None:
    etag = await bucket.create("tag.json", b"v1")
    newer = await bucket.replace("tag.json", b"v2", etag)
    with pytest.raises(PreconditionFailed):
        await bucket.replace("tag.json", b"v3", etag)  # stale: someone wrote since
    with pytest.raises(PreconditionFailed):
        await bucket.delete("tag.json", if_match=etag)
    assert (await bucket.get("tag.json"))[1] == b"v2"
    await bucket.delete("tag.json", if_match=newer)
    assert await bucket.head("tag.json") is None
    with pytest.raises(PreconditionFailed):
        await bucket.delete("tag.json", if_match=newer)  # gone: not the version we meant
    await bucket.delete("tag.json")  # unconditional: missing is fine


async def test_range_reads_and_streams_start_at_an_offset(bucket: Bucket) -> None:
    data = bytes(range(256)) * 4000
    await bucket.put("blobs/x", data)
    info, part = await bucket.get("blobs/x", start=1000, end=1010)
    assert part == data[1000:1010] and info.size == len(data)
    stream = await bucket.open("blobs/x", start=5)
    assert stream.info.size == len(data)
    assert b"".join([chunk async for chunk in stream.chunks(4096)]) == data[5:]
    with pytest.raises(NotFound):
        await bucket.open("blobs/missing")


async def test_names_are_relative_to_the_prefix_and_listings_strip_it(
    bucket: Bucket, s3_server: SeaweedS3
) -> None:
    for name in ("blobs/sha256/aa", "blobs/sha256/bb", "manifests/sha256/cc"):
        await bucket.put(name, b"x" * 3)
    listed = [info.name async for info in bucket.list("blobs/")]
    assert listed == ["blobs/sha256/aa", "blobs/sha256/bb"]
    assert set(bucket_keys(s3_server, bucket.location.prefix)) == {
        bucket.key(name) for name in ("blobs/sha256/aa", "blobs/sha256/bb", "manifests/sha256/cc")
    }
    assert bucket.location.prefix.startswith("t-")


async def test_a_multipart_upload_publishes_only_on_completion_and_never_over_an_object(
    bucket: Bucket, s3_server: SeaweedS3
) -> None:
    upload = await bucket.create_upload("blobs/big")
    parts = [
        await bucket.upload_part("blobs/big", upload, 1, b"a" * MIN_PART),
        await bucket.upload_part("blobs/big", upload, 2, b"b" * 10),
    ]
    assert await bucket.head("blobs/big") is None  # nothing visible before completion
    assert [u.name async for u in bucket.list_uploads("blobs/")] == ["blobs/big"]
    await bucket.complete_upload("blobs/big", upload, parts)
    assert (await bucket.head("blobs/big")).size == MIN_PART + 10  # type: ignore[union-attr]

    second = await bucket.create_upload("blobs/big")
    part = await bucket.upload_part("blobs/big", second, 1, b"c" * 10)
    with pytest.raises(PreconditionFailed):
        await bucket.complete_upload("blobs/big", second, [part])
    await bucket.abort_upload("blobs/big", second)
    await bucket.abort_upload("blobs/big", second)  # already gone: fine
    assert (await bucket.head("blobs/big")).size == MIN_PART + 10  # type: ignore[union-attr]
    assert pending_uploads(s3_server, bucket.location.prefix) == []


async def test_a_wrong_secret_is_an_error_that_does_not_show_it(s3_server: SeaweedS3) -> None:
    from appliance.config.secret import Secret

    fleet = s3_server.fleet_config(secret_access_key=Secret("wrong-secret-value"))
    async with Bucket(fleet) as wrong:
        with pytest.raises(BucketError) as caught:
            await wrong.put("x", b"x")
    assert caught.value.status == 403
    assert "wrong-secret-value" not in str(caught.value) and TOKEN not in str(caught.value)
