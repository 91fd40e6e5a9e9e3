"""The start-up probe: a store that honours conditions passes; one that ignores them is refused by name."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from appliance.fleet.bucket import Bucket
from appliance.fleet.probe import FleetRefused, probe
from tests.fixtures.s3_strip_proxy import StripProxy
from tests.fixtures.seaweedfs import TOKEN, SeaweedS3, bucket_keys


@pytest.fixture
async def stripping(request: pytest.FixtureRequest, s3_server: SeaweedS3) -> AsyncIterator[StripProxy]:
    proxy = StripProxy(s3_server, request.param)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_seaweedfs_passes_every_check_and_leaves_nothing_behind(s3_server: SeaweedS3) -> None:
    fleet = s3_server.fleet_config()
    async with Bucket(fleet) as bucket:
        result = await probe(bucket, fleet.replica_id)
    assert result.checks == (
        "write access",
        "conditional create",
        "conditional overwrite",
        "conditional delete",
        "range read",
    )
    assert bucket_keys(s3_server, fleet.location.prefix) == {}


@pytest.mark.parametrize(
    ("stripping", "check"),
    [
        (["if-none-match"], "conditional create"),
        (["if-match"], "conditional overwrite"),
        (["range"], "range read"),
    ],
    indirect=["stripping"],
)
async def test_a_store_that_drops_a_condition_is_refused_naming_the_check(
    s3_server: SeaweedS3, stripping: StripProxy, check: str
) -> None:
    fleet = s3_server.fleet_config(endpoint=stripping.endpoint)
    async with Bucket(fleet) as bucket:
        with pytest.raises(FleetRefused) as caught:
            await probe(bucket, fleet.replica_id)
    assert stripping.stripped > 0
    assert caught.value.check == check
    assert caught.value.where == "fleet.store" and f"fleet mode refused: {check}" in str(caught.value)
    assert s3_server.secret_key not in str(caught.value) and TOKEN not in str(caught.value)


async def test_a_store_that_cannot_be_reached_is_refused(s3_server: SeaweedS3) -> None:
    fleet = s3_server.fleet_config(endpoint="http://127.0.0.1:9")
    async with Bucket(fleet) as bucket:
        with pytest.raises(FleetRefused) as caught:
            await probe(bucket, fleet.replica_id)
    assert caught.value.check == "write access"
