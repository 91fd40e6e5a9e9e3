"""Issue 18 acceptance: three real engine replicas share one cache on a real SeaweedFS bucket.

Every replica is ``appliance run`` in its own process, with ``[fleet]`` pointing at the same bucket
prefix and its own loopback port as ``advertise_url``.  The upstream is the real docker-registry
(TLS), reached through ``SlowRelay`` (a byte relay that can be slowed down); its access log is the
ground truth for "how many times did the upstream serve this blob".  Clients are plain-HTTP mirror
clients (``/v2/<repo>/blobs/<digest>?ns=<registry>``), each request to one chosen replica.
"""

from __future__ import annotations

import hashlib
import http.client
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tests.fixtures.seaweedfs import TOKEN, SeaweedS3, bucket_keys
from tests.fixtures.slow_relay import SlowRelay, slow_relay

pytestmark = pytest.mark.e2e

LEASE_TTL = "3s"


@dataclass
class Fleet:
    replicas: list[Appliance]
    prefix: str
    relay: SlowRelay
    registry: UpstreamRegistry
    s3: SeaweedS3

    def blob_path(self, repository: str, digest: str) -> str:
        return f"/v2/{repository}/blobs/{digest}?ns={self.registry.name_port}"

    def bucket_blobs(self) -> dict[str, int]:
        """``sha256:<hex>`` -> size of every blob object in the bucket."""
        found = {}
        for key, size in bucket_keys(self.s3, self.prefix + "/blobs/").items():
            _, algorithm, hex_part = key.rsplit("/", 2)
            found[f"{algorithm}:{hex_part}"] = size
        return found

    def wait_published(self, digests: list[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not set(digests) <= set(self.bucket_blobs()):
            assert time.monotonic() < deadline, f"not published: {set(digests) - set(self.bucket_blobs())}"
            time.sleep(0.1)


def get_blob(replica: Appliance, path: str, timeout: float = 60) -> tuple[int, bytes, float]:
    """(status, body, seconds to the first body byte) of a plain-HTTP GET to one replica."""
    connection = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=timeout)
    try:
        started = time.monotonic()
        connection.request("GET", path)
        response = connection.getresponse()
        first = response.read(1)
        ttfb = time.monotonic() - started
        return response.status, first + response.read(), ttfb
    finally:
        connection.close()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fleet_toml(
    s3: SeaweedS3, prefix: str, port: int, replica_id: str, endpoint: str | None = None
) -> dict[str, object]:
    return {
        "store": f"s3://{s3.bucket}/{prefix}",
        "endpoint": endpoint or s3.endpoint,
        "access_key_id": s3.access_key,
        "secret_access_key": s3.secret_key,
        "replica_id": replica_id,
        "advertise_url": f"http://127.0.0.1:{port}",
        "token": TOKEN,
        "lease_ttl": LEASE_TTL,
    }


def make_replica(
    workdir: Path,
    pki: TestPKI,
    registry: UpstreamRegistry,
    upstream_address: str,
    s3: SeaweedS3,
    prefix: str,
    name: str,
) -> Appliance:
    spec = UpstreamSpec(registry.name_port, upstream_address)
    replica = Appliance(workdir / name, [spec], upstream_ca=pki.ca_file)
    replica.extra_toml = {
        # Exact accounting: only the clients' own requests reach the upstream.
        "cache": {"pull_ahead": 0},
        "fleet": fleet_toml(s3, prefix, replica.port, name),
    }
    replica.write_config()
    return replica


@pytest.fixture
def fleet(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, s3_server: SeaweedS3
) -> Iterator[Fleet]:
    prefix = "e2e-" + secrets.token_hex(4)
    with slow_relay(("127.0.0.1", open_registry.port)) as relay:
        replicas = [
            make_replica(tmp_path, pki, open_registry, relay.address, s3_server, prefix, name)
            for name in "abc"
        ]
        try:
            for replica in replicas:
                replica.start()
            yield Fleet(replicas, prefix, relay, open_registry, s3_server)
        finally:
            for replica in replicas:
                replica.stop()
    for replica in replicas:
        if replica.process is not None and replica.process.returncode != -signal.SIGKILL:
            replica.assert_clean_log()


def test_a_blob_fetched_through_one_replica_is_served_by_the_others_with_no_upstream_request(
    fleet: Fleet, push_test_image: ImagePusher
) -> None:
    image = push_test_image(fleet.registry, layer_sizes=(300_000, 9_000_000, 50_000))
    a, b, c = fleet.replicas
    fleet.registry.clear_requests()
    for digest in image.blob_digests:
        status, body, _ = get_blob(a, fleet.blob_path(image.repository, digest))
        assert (status, sha256(body)) == (200, digest)
    assert len(fleet.registry.blob_requests(image.repository)) == len(image.blob_digests)
    fleet.wait_published(list(image.blob_digests))

    fleet.registry.clear_requests()
    for replica in (b, c):
        for digest in image.blob_digests:
            status, body, _ = get_blob(replica, fleet.blob_path(image.repository, digest))
            assert (status, sha256(body)) == (200, digest)
    assert fleet.registry.requests() == []
    # And each is now on the replica's own disk: a second read is a local HIT.
    for replica in (b, c):
        events = [e for e in replica.events() if " blob " in e]
        assert len(events) == len(image.blob_digests), events
