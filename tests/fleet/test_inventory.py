"""``cache ls --fleet`` and ``cache verify --fleet``: the bucket listed by repository and re-hashed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.cache.blobstore import Kind
from appliance.config.fleet import FleetConfig
from appliance.digests import digest_of
from appliance.fleet.bucket import Bucket
from appliance.fleet.inventory import inventory, verify_bucket
from appliance.fleet.store import object_name
from appliance.fleet.tier import link_name
from tests.fixtures.seaweedfs import TOKEN, SeaweedS3

APPLIANCE = Path(sys.executable).parent / "appliance"
GOOD, OTHER, MANIFEST = b"good layer" * 100, b"other layer", b'{"schemaVersion":2}'


@pytest.fixture
async def filled(s3_server: SeaweedS3) -> AsyncIterator[Bucket]:
    """A bucket with a good blob and manifest linked to one repository, and a corrupt blob."""
    async with Bucket(s3_server.fleet_config()) as bucket:
        good, manifest = digest_of(GOOD), digest_of(MANIFEST)
        await bucket.create(object_name(Kind.BLOB, good), GOOD)
        await bucket.create(object_name(Kind.MANIFEST, manifest), MANIFEST)
        # Bytes under a name they do not hash to: what verify exists to find.
        await bucket.create(object_name(Kind.BLOB, digest_of(b"expected")), OTHER)
        for digest in (good, manifest):
            await bucket.put(link_name("registry.test:5000", "team/app", digest), b"")
        await bucket.put(link_name("registry.test:5000", "team/gone", digest_of(b"evicted")), b"")
        await bucket.create_upload("blobs/sha256/" + "c" * 64)
        yield bucket


async def test_inventory_counts_the_bucket_and_groups_it_by_the_repositories_linked(filled: Bucket) -> None:
    found = await inventory(filled)
    assert (found.blobs, found.blob_bytes) == (2, len(GOOD) + len(OTHER))
    assert (found.manifests, found.manifest_bytes) == (1, len(MANIFEST))
    assert (found.uploads, found.leases) == (1, 0)
    [repository] = found.repositories  # team/gone's only object is no longer there
    assert (repository.registry, repository.repository) == ("registry.test:5000", "team/app")
    assert (repository.objects, repository.size) == (2, len(GOOD) + len(MANIFEST))


async def test_verify_finds_the_corrupt_object_and_repair_deletes_only_it(filled: Bucket) -> None:
    report = await verify_bucket(filled)
    assert report.checked == 3 and not report.consistent
    assert report.corrupt == (f"blob {digest_of(b'expected')}",)
    await verify_bucket(filled, repair=True)
    assert await filled.head(object_name(Kind.BLOB, digest_of(b"expected"))) is None
    assert await filled.head(object_name(Kind.BLOB, digest_of(GOOD))) is not None
    assert (await verify_bucket(filled)).consistent


def fleet_env(fleet: FleetConfig) -> dict[str, str]:
    return {
        "FLEET_STORE": fleet.store,
        "FLEET_ENDPOINT": fleet.endpoint,
        "FLEET_ACCESS_KEY_ID": fleet.access_key_id,
        "FLEET_SECRET_ACCESS_KEY": fleet.secret_access_key.reveal(),
        "FLEET_ADVERTISE_URL": "http://127.0.0.1:1",
        "FLEET_TOKEN": TOKEN,
    }


async def test_the_cache_commands_work_on_the_bucket_with_fleet(filled: Bucket, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", **fleet_env(filled.fleet)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(APPLIANCE), "cache", *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    listed = cli("ls", "--fleet")
    assert listed.returncode == 0, listed.stderr
    assert "registry.test:5000/team/app  2 objects" in listed.stdout
    assert "2 blobs" in listed.stdout and "1 manifests" in listed.stdout
    as_json = json.loads(cli("ls", "--fleet", "--json").stdout)
    assert as_json["repositories"][0]["repository"] == "team/app"
    verified = cli("verify", "--fleet")
    assert verified.returncode == 1 and f"blob {digest_of(b'expected')}" in verified.stdout
    assert "INCONSISTENT" in verified.stdout
    assert cli("verify", "--fleet", "--repair").returncode == 0
    assert cli("verify", "--fleet").returncode == 0
    for output in (listed, verified):
        assert filled.fleet.secret_access_key.reveal() not in output.stdout + output.stderr
