"""Issue 18 item 6 on real replicas: ``appliance status`` and ``/metrics`` show what the fleet did.

Two ``appliance run`` processes share a prefix of the real SeaweedFS bucket; the upstream is the real
docker-registry.  A blob pulled through ``a`` is a lease win on ``a`` and an L2 hit on ``b``: the CLI's
fleet block and the Prometheus samples of each replica must say exactly that.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_fleet import get_blob, make_replica, sha256
from tests.fixtures.appliance import Appliance
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tests.fixtures.seaweedfs import TOKEN, SeaweedS3, bucket_keys

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _cli_status(replica: Appliance) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "status", "--socket", str(replica.control_socket)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def _metrics(replica: Appliance) -> dict[str, float]:
    """Unlabelled samples by name, plus ``appliance_fleet_info`` with its labels folded in."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{replica.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


@pytest.fixture
def pair(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, s3_server: SeaweedS3
) -> Iterator[tuple[Appliance, Appliance, str]]:
    prefix = "ops-" + secrets.token_hex(4)
    replicas = [
        make_replica(tmp_path, pki, open_registry, open_registry.host_port, s3_server, prefix, name)
        for name in "ab"
    ]
    try:
        for replica in replicas:
            replica.start()
        yield replicas[0], replicas[1], prefix
    finally:
        for replica in replicas:
            replica.stop()
    for replica in replicas:
        replica.assert_clean_log()


def test_status_and_metrics_count_the_owners_fill_and_the_other_replicas_l2_hits(
    pair: tuple[Appliance, Appliance, str],
    open_registry: UpstreamRegistry,
    s3_server: SeaweedS3,
    push_test_image: ImagePusher,
) -> None:
    a, b, prefix = pair
    image = push_test_image(open_registry, layer_sizes=(200_000, 1_500_000))
    blobs = list(image.blob_digests)
    path = f"/v2/{image.repository}/blobs/{{}}?ns={open_registry.name_port}"
    for digest in blobs:
        status, body, _ = get_blob(a, path.format(digest))
        assert (status, sha256(body)) == (200, digest)
    # Published after the digest check, detached from the request: wait for all of them.
    deadline = time.monotonic() + 30
    while len(bucket_keys(s3_server, f"{prefix}/blobs/")) < len(blobs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(bucket_keys(s3_server, f"{prefix}/blobs/")) == len(blobs)
    for digest in blobs:
        status, body, _ = get_blob(b, path.format(digest))
        assert (status, sha256(body)) == (200, digest)

    owner, other = _metrics(a), _metrics(b)
    assert owner["appliance_fleet_lease_wins_total"] == len(blobs)
    assert owner["appliance_fleet_l2_hits_total"] == 0
    assert other["appliance_fleet_l2_hits_total"] == len(blobs)
    assert other["appliance_fleet_lease_wins_total"] == 0
    assert other[f"appliance_fleet_info{{replica=b,store=s3://{s3_server.bucket}/{prefix}}}"] == 1
    assert other["appliance_fleet_replicas"] >= 1

    text = _cli_status(b)
    assert f"fleet         s3://{s3_server.bucket}/{prefix} as b, " in text
    assert f"  replicas    b (this one) http://127.0.0.1:{b.port}, seen " in text
    assert "  leases      0 won (filled from upstream), 0 lost" in text
    assert f"  L2          {len(blobs)} hits from the bucket; " in text
    assert f"  leases      {len(blobs)} won (filled from upstream), 0 lost" in _cli_status(a)
    for secret in (s3_server.secret_key, TOKEN):
        assert secret not in text and secret not in str(other)
