"""``FleetService``: what it reports, and that an engine without a fleet never loads the S3 client."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.cache import BlobCache
from appliance.config.model import CacheConfig
from appliance.fleet.service import FleetService
from tests.fixtures.seaweedfs import TOKEN, SeaweedS3


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[BlobCache]:
    blobs = BlobCache.on_disk(tmp_path / "cache", CacheConfig(max_size=1 << 30, min_free_disk=0))
    await blobs.start()
    yield blobs
    await blobs.close()


async def test_a_started_service_sits_under_the_cache_and_reports_its_store(
    cache: BlobCache, s3_server: SeaweedS3
) -> None:
    fleet = s3_server.fleet_config(max_size=5 * 1024**3)
    service = FleetService(fleet, cache)
    await service.start()
    try:
        assert cache.tier is service.tier
        status = service.status()
        assert (status.store, status.replica_id, status.bucket_max) == (fleet.store, "replica-a", 5 * 1024**3)
        assert [r.replica_id for r in status.replicas] == ["replica-a"]
        assert (status.lease_wins, status.lease_losses, status.l2_hits, status.last_error) == (0, 0, 0, "")
        assert s3_server.secret_key not in repr(status) and TOKEN not in repr(status)
    finally:
        await service.close()
    assert cache.tier is None


async def test_status_lists_the_replicas_whose_access_reports_the_bucket_holds(
    tmp_path: Path, cache: BlobCache, s3_server: SeaweedS3
) -> None:
    other_cache = BlobCache.on_disk(tmp_path / "b", CacheConfig(max_size=1 << 30, min_free_disk=0))
    await other_cache.start()
    prefix = "t-" + secrets.token_hex(4)  # both replicas on one prefix: one fleet
    other = FleetService(s3_server.fleet_config(prefix, replica_id="replica-b"), other_cache)
    await other.start()
    other.tier.report.touch("sha256:" + "ab" * 32)
    await other.close()  # writes replica-b's report
    await other_cache.close()

    service = FleetService(s3_server.fleet_config(prefix), cache)
    await service.start()
    try:
        for _ in range(100):
            if len(service.status().replicas) == 2:
                break
            await asyncio.sleep(0.05)
        replicas = service.status().replicas
        assert [r.replica_id for r in replicas] == ["replica-a", "replica-b"]
        assert replicas[1].last_seen > 0
    finally:
        await service.close()


def test_an_engine_without_a_fleet_does_not_load_the_s3_client() -> None:
    code = (
        "import sys, appliance.engine, appliance.runner, appliance.cli.main, appliance.control.server\n"
        "print(sorted(m for m in ('aiobotocore', 'botocore') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
