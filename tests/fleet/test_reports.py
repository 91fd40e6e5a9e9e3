"""Access reports: last access per digest, bounded, written only when something changed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from appliance.fleet.bucket import Bucket
from appliance.fleet.reports import AccessReport, parse_report, report_name
from tests.fixtures.seaweedfs import SeaweedS3


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_the_latest_access_wins_and_the_least_recent_are_forgotten_past_the_limit() -> None:
    clock = Clock()
    report = AccessReport("r1", limit=2, clock=clock)
    report.touch("sha256:a")
    clock.now += 1
    report.touch("sha256:b")
    clock.now += 1
    report.touch("sha256:a")  # a is the most recent now
    clock.now += 1
    report.touch("sha256:c")  # over the limit: b goes
    assert report.snapshot() == {"sha256:a": 1_002.0, "sha256:c": 1_003.0}
    assert parse_report(report.to_bytes()) == report.snapshot()


@pytest.mark.parametrize("data", [b"", b"[]", b'{"accessed": 3}', b'{"accessed": {"a": "x"}}', b"{}"])
def test_an_object_that_is_not_a_report_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_report(data)


@pytest.fixture
async def bucket(s3_server: SeaweedS3) -> AsyncIterator[Bucket]:
    async with Bucket(s3_server.fleet_config()) as opened:
        yield opened


async def test_a_report_is_written_under_the_replica_id_only_when_touched(bucket: Bucket) -> None:
    report = AccessReport("replica-a")
    assert not await report.flush(bucket)
    assert await bucket.head(report_name("replica-a")) is None
    report.touch("sha256:" + "a" * 64, 5.0)
    assert await report.flush(bucket)
    _, data = await bucket.get(report_name("replica-a"))
    assert parse_report(data) == {"sha256:" + "a" * 64: 5.0}
    assert not await report.flush(bucket)  # nothing new
