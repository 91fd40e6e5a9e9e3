"""Issue 18 acceptance: three real engine replicas share one cache on a real SeaweedFS bucket.

Every replica is ``appliance run`` in its own process, with ``[fleet]`` pointing at the same bucket
prefix and its own loopback port as ``advertise_url``.  The upstream is the real docker-registry
(TLS), reached through ``SlowRelay`` (a byte relay that can be slowed down); its access log is the
ground truth for "how many times did the upstream serve this blob".  Clients are plain-HTTP mirror
clients (``/v2/<repo>/blobs/<digest>?ns=<registry>``), each request to one chosen replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.cache.blobstore import Kind
from appliance.config.secret import Secret
from appliance.control.client import ControlClient
from appliance.digests import parse_digest
from appliance.fleet.endpoint import AUTH_HEADER, sign
from appliance.fleet.store import object_name
from appliance.protocol.status import FleetStatus
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.images import ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tests.fixtures.s3_strip_proxy import StripProxy
from tests.fixtures.seaweedfs import TOKEN, SeaweedS3, bucket_keys, pending_uploads
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
    s3: SeaweedS3,
    prefix: str,
    port: int,
    replica_id: str,
    endpoint: str | None = None,
    janitor_interval: str | None = None,
) -> dict[str, object]:
    table: dict[str, object] = {
        "store": f"s3://{s3.bucket}/{prefix}",
        "endpoint": endpoint or s3.endpoint,
        "access_key_id": s3.access_key,
        "secret_access_key": s3.secret_key,
        "replica_id": replica_id,
        "advertise_url": f"http://127.0.0.1:{port}",
        "token": TOKEN,
        "lease_ttl": LEASE_TTL,
    }
    if janitor_interval is not None:
        table["janitor_interval"] = janitor_interval
    return table


def make_replica(
    workdir: Path,
    pki: TestPKI,
    registry: UpstreamRegistry,
    upstream_address: str,
    s3: SeaweedS3,
    prefix: str,
    name: str,
    janitor_interval: str | None = None,
) -> Appliance:
    spec = UpstreamSpec(registry.name_port, upstream_address)
    replica = Appliance(workdir / name, [spec], upstream_ca=pki.ca_file)
    replica.extra_toml = {
        # Exact accounting: only the clients' own requests reach the upstream.
        "cache": {"pull_ahead": 0},
        "fleet": fleet_toml(s3, prefix, replica.port, name, janitor_interval=janitor_interval),
    }
    replica.write_config()
    return replica


@contextlib.contextmanager
def running_fleet(
    tmp_path: Path,
    pki: TestPKI,
    registry: UpstreamRegistry,
    s3: SeaweedS3,
    extra_toml: dict[str, object] | None = None,
    janitor_interval: str | None = None,
) -> Iterator[Fleet]:
    prefix = "e2e-" + secrets.token_hex(4)
    with slow_relay(("127.0.0.1", registry.port)) as relay:
        replicas = [
            make_replica(tmp_path, pki, registry, relay.address, s3, prefix, name, janitor_interval)
            for name in "abc"
        ]
        for replica in replicas:
            replica.extra_toml = {**replica.extra_toml, **(extra_toml or {})}
            replica.write_config()
        try:
            for replica in replicas:
                replica.start()
            yield Fleet(replicas, prefix, relay, registry, s3)
        finally:
            for replica in replicas:
                replica.stop()
    for replica in replicas:
        if replica.process is not None and replica.process.returncode != -signal.SIGKILL:
            replica.assert_clean_log()


@pytest.fixture
def janitor_interval() -> str | None:
    """``[fleet] janitor_interval`` of every replica (None: the default minute); a test that watches
    the janitor act overrides it with ``@pytest.mark.parametrize("janitor_interval", [...])``."""
    return None


@pytest.fixture
def fleet(
    tmp_path: Path,
    pki: TestPKI,
    open_registry: UpstreamRegistry,
    s3_server: SeaweedS3,
    janitor_interval: str | None,
) -> Iterator[Fleet]:
    with running_fleet(tmp_path, pki, open_registry, s3_server, janitor_interval=janitor_interval) as running:
        yield running


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
    for replica in (b, c):
        events = [e for e in replica.events() if " blob " in e]
        assert len(events) == len(image.blob_digests), events
        status = asyncio.run(fleet_status(replica))
        assert status is not None and status.replica_id == replica.workdir.name
        assert status.l2_hits == len(image.blob_digests) and status.lease_wins == 0
    owner = asyncio.run(fleet_status(a))
    assert owner is not None and owner.lease_wins == len(image.blob_digests) and owner.l2_hits == 0
    assert owner.store == f"s3://{fleet.s3.bucket}/{fleet.prefix}"


def test_the_internal_endpoint_serves_replicas_with_the_token_and_nobody_else(
    fleet: Fleet, push_test_image: ImagePusher
) -> None:
    image = push_test_image(fleet.registry, layer_sizes=(200_000,))
    digest = image.layer_digests[0]
    a = fleet.replicas[0]
    status, body, _ = get_blob(a, fleet.blob_path(image.repository, digest))
    assert (status, sha256(body)) == (200, digest)
    target = f"/_fleet/v1/fills/{digest}?offset=1000"

    def internal(headers: dict[str, str]) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
        try:
            connection.request("GET", target, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()

    assert internal({}) == (403, b"forbidden\n")
    forged = sign(Secret("not-the-fleet-token"), "b", "GET", target, time.time())
    assert internal({AUTH_HEADER: forged})[0] == 403
    # A client's own credentials mean nothing here either.
    assert internal({"Authorization": "Basic YWxpY2U6cHc="})[0] == 403
    signed = sign(Secret(TOKEN), "b", "GET", target, time.time())
    assert internal({AUTH_HEADER: signed}) == (200, body[1000:])


async def fleet_status(replica: Appliance) -> FleetStatus | None:
    async with ControlClient(replica.control_socket) as client:
        return (await client.status()).fleet


def test_fifty_clients_on_three_replicas_get_five_cold_blobs_each_fetched_upstream_once(
    fleet: Fleet, push_test_image: ImagePusher
) -> None:
    image = push_test_image(fleet.registry, layer_sizes=(3_000_000, 2_000_000, 4_000_000, 1_000_000))
    digests = list(image.blob_digests)
    assert len(digests) == 5
    fleet.registry.clear_requests()
    # Slow enough that the fills overlap the followers' requests: 5 blobs of ~10 MB in ~2.5 s.
    fleet.relay.rate = 4_000_000
    barrier = threading.Barrier(50)
    results: list[tuple[int, str, int, str, float]] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        replica = fleet.replicas[number % 3]
        digest = digests[number % 5]
        barrier.wait()
        started = time.monotonic()
        status, body, ttfb = get_blob(replica, fleet.blob_path(image.repository, digest))
        with lock:
            results.append((number, digest, status, sha256(body), started + ttfb))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 50
    assert all(status == 200 and got == digest for _, digest, status, got, _ in results), results
    gets = fleet.registry.blob_requests(image.repository)
    per_blob = {digest: sum(r.path.endswith(digest) for r in gets) for digest in digests}
    assert per_blob == dict.fromkeys(digests, 1), per_blob
    spreads = {}
    for digest in digests:
        firsts = [first for _, d, _, _, first in results if d == digest]
        spreads[digest] = max(firsts) - min(firsts)
    print("first-byte spread per blob (s):", {d[7:19]: round(s, 3) for d, s in spreads.items()})
    assert max(spreads.values()) < 1.0, spreads


# Every replica's janitor loop runs each second (the product's own loop, only more often), so the run
# after the orphan age (4 lease TTLs) comes within the test's patience.
@pytest.mark.parametrize("janitor_interval", ["1s"])
def test_when_the_owner_is_killed_mid_fill_the_others_take_over_and_finish_with_the_right_bytes(
    fleet: Fleet, push_test_image: ImagePusher
) -> None:
    image = push_test_image(fleet.registry, layer_sizes=(16_000_000,))
    digest = image.layer_digests[0]
    path = fleet.blob_path(image.repository, digest)
    parsed = parse_digest(digest)
    lease_key = f"{fleet.prefix}/leases/blob/{parsed.algorithm}/{parsed.hex}.json"
    blob_key = f"{fleet.prefix}/{object_name(Kind.BLOB, parsed)}"
    fleet.registry.clear_requests()
    fleet.relay.rate = 2_000_000  # ~8 s for the blob: the owner dies in the middle
    a, b, c = fleet.replicas
    results: dict[str, tuple[int, str]] = {}
    sizes: dict[str, int] = {}

    def client(replica: Appliance) -> None:
        try:
            status, body, _ = get_blob(replica, path)
            results[replica.workdir.name] = (status, sha256(body))
            sizes[replica.workdir.name] = len(body)
        except (OSError, http.client.HTTPException) as exc:
            results[replica.workdir.name] = (0, type(exc).__name__)

    owner = threading.Thread(target=client, args=(a,))
    owner.start()
    deadline = time.monotonic() + 10
    while lease_key not in bucket_keys(fleet.s3, lease_key):
        assert time.monotonic() < deadline, "replica a never took the lease"
        time.sleep(0.05)
    followers = [threading.Thread(target=client, args=(r,)) for r in (b, c)]
    for thread in followers:
        thread.start()
    followed = time.monotonic() + 2.0  # both follow a's fill by then
    # a's multipart upload begins with its first full part (8 MiB, ~4 s in): a dies with it open,
    # the leftover only the janitor can remove.
    deadline = time.monotonic() + 15
    while blob_key not in pending_uploads(fleet.s3, blob_key):
        assert time.monotonic() < deadline, "replica a never began its upload"
        time.sleep(0.05)
    time.sleep(max(0.0, followed - time.monotonic()))
    a.kill()
    for thread in followers:
        thread.join(90)
    owner.join(10)
    assert results["b"] == (200, digest) and results["c"] == (200, digest), results
    gets = [r for r in fleet.registry.blob_requests(image.repository) if r.path.endswith(digest)]
    assert 1 <= len(gets) <= 2, gets
    # The one who took over published the verified blob; nothing partial or wrong is in the bucket.
    fleet.wait_published([digest])
    assert fleet.bucket_blobs() == {digest: sizes["b"]}
    body = fleet.s3.client().get_object(Bucket=fleet.s3.bucket, Key=blob_key)
    assert sha256(body["Body"].read()) == digest
    # The janitor (a survivor's loop; b or c takes janitor.lease over if a held it) aborts a's upload
    # once it is 4 lease TTLs old, and no lease is left: bounded by that age, the janitor lease's
    # takeover and a few runs.
    deadline = time.monotonic() + 40

    def leftovers() -> tuple[dict[str, int], list[str]]:
        return bucket_keys(fleet.s3, f"{fleet.prefix}/leases/"), pending_uploads(fleet.s3, fleet.prefix + "/")

    while any(leftovers()):
        assert time.monotonic() < deadline, leftovers()
        time.sleep(0.2)
    # The published blob was left intact: only the upload was aborted.
    assert fleet.bucket_blobs() == {digest: sizes["b"]}
    body = fleet.s3.client().get_object(Bucket=fleet.s3.bucket, Key=blob_key)
    assert sha256(body["Body"].read()) == digest


@pytest.fixture
def stripping_proxy(s3_server: SeaweedS3) -> Iterator[StripProxy]:
    """SeaweedFS behind a proxy that drops If-None-Match, as some S3 gateways do, on its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="strip-proxy", daemon=True)
    thread.start()
    proxy = StripProxy(s3_server, ["if-none-match"])
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_store_that_ignores_conditional_writes_is_refused_at_start_with_the_check_named(
    tmp_path: Path,
    pki: TestPKI,
    open_registry: UpstreamRegistry,
    s3_server: SeaweedS3,
    stripping_proxy: StripProxy,
) -> None:
    replica = make_replica(tmp_path, pki, open_registry, open_registry.host_port, s3_server, "refused", "a")
    replica.extra_toml = {
        **replica.extra_toml,
        "fleet": fleet_toml(s3_server, "refused", replica.port, "a", stripping_proxy.endpoint),
    }
    replica.write_config()
    with pytest.raises(RuntimeError) as caught:
        replica.start()
    assert replica.process is not None and replica.process.wait(10) != 0
    message = str(caught.value)
    assert "fleet mode refused: conditional create" in message, message
    assert "If-None-Match" in message
    assert stripping_proxy.stripped > 0
    assert "Unclosed" not in replica.log_text() and "Traceback" not in replica.log_text()
    assert s3_server.secret_key not in replica.log_text() and TOKEN not in replica.log_text()
    # It never listened: no client was served by a replica that could not coordinate.
    with pytest.raises(OSError):
        replica.get("/", timeout=1)


def test_a_manifest_by_digest_fetched_through_one_replica_is_not_fetched_again_by_another(
    fleet: Fleet, push_test_image: ImagePusher
) -> None:
    image = push_test_image(fleet.registry, layer_sizes=(1000,))
    a, b, _ = fleet.replicas
    path = f"/v2/{image.repository}/manifests/{image.manifest_digest}?ns={fleet.registry.name_port}"
    accept = {"Accept": image.media_type}

    def get(replica: Appliance) -> tuple[int, bytes, str]:
        connection = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=30)
        try:
            connection.request("GET", path, headers=accept)
            answer = connection.getresponse()
            return answer.status, answer.read(), answer.headers.get("Content-Type", "")
        finally:
            connection.close()

    status, body, media_type = get(a)
    assert (status, sha256(body), media_type) == (200, image.manifest_digest, image.media_type)
    parsed = parse_digest(image.manifest_digest)
    name = f"{fleet.prefix}/manifests/{parsed.algorithm}/{parsed.hex}"
    deadline = time.monotonic() + 10
    while name not in bucket_keys(fleet.s3, name):
        assert time.monotonic() < deadline, "manifest never shared"
        time.sleep(0.05)
    fleet.registry.clear_requests()
    assert get(b) == (200, body, image.media_type)
    # At most the HEAD that vouches for the repository on b: never a second GET of the manifest.
    assert [r.method for r in fleet.registry.requests() if "/manifests/" in r.path] in ([], ["HEAD"])


def test_a_shared_blob_is_not_served_in_a_repository_the_upstream_does_not_vouch_for(
    fleet: Fleet, push_test_image: ImagePusher
) -> None:
    image = push_test_image(fleet.registry, layer_sizes=(100_000,))
    digest = image.layer_digests[0]
    a, b, _ = fleet.replicas
    assert get_blob(a, fleet.blob_path(image.repository, digest))[0] == 200
    fleet.wait_published([digest])
    fleet.registry.clear_requests()
    # The bucket holds the bytes, but this repository does not have them upstream.
    status, body, _ = get_blob(b, fleet.blob_path("test/not-this-one", digest))
    assert status == 404 and digest.encode() not in body and len(body) < 1000, body
    asked = [(r.method, r.path) for r in fleet.registry.requests() if "/blobs/" in r.path]
    assert asked == [("HEAD", f"/v2/test/not-this-one/blobs/{digest}")]


def test_the_internal_endpoint_is_reached_past_client_authentication_by_its_hmac_alone(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, s3_server: SeaweedS3
) -> None:
    replica = make_replica(tmp_path, pki, open_registry, open_registry.host_port, s3_server, "auth", "a")
    replica.extra_toml = {**replica.extra_toml, "access": {"enabled": True}}
    replica.write_config()
    target = "/_fleet/v1/fills/sha256:" + "e" * 64

    def get(path: str, headers: dict[str, str]) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=10)
        try:
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            answer.read()
            return answer.status
        finally:
            connection.close()

    with replica:
        # A client without credentials is stopped at the front door...
        assert get(f"/v2/test/x/blobs/sha256:{'e' * 64}?ns={open_registry.name_port}", {}) == 401
        # ...the fleet endpoint refuses it too, and a replica's signed request gets through to the
        # endpoint itself (404: this replica fills no such blob), no client identity asked.
        assert get(target, {}) == 403
        assert get(target, {AUTH_HEADER: sign(Secret(TOKEN), "b", "GET", target, time.time())}) == 404


TAG_TTL = 2.0


def get_manifest(replica: Appliance, path: str, accept: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, sha256 of the body, Docker-Content-Digest) of a plain-HTTP manifest GET (or HEAD)."""
    connection = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=30)
    try:
        connection.request(method, path, headers={"Accept": accept})
        answer = connection.getresponse()
        body = answer.read()
        return answer.status, sha256(body), answer.headers.get("Docker-Content-Digest", "")
    finally:
        connection.close()


def test_a_stale_tag_pulled_through_three_replicas_at_once_is_checked_upstream_once_for_the_fleet(
    tmp_path: Path,
    pki: TestPKI,
    open_registry: UpstreamRegistry,
    s3_server: SeaweedS3,
    push_test_image: ImagePusher,
) -> None:
    # Every tag lives TAG_TTL seconds: then each replica would send its own HEAD by tag.
    short = {"manifest_cache": {"enabled": True, "default_ttl": f"{TAG_TTL:g}s", "tiers": []}}
    with running_fleet(tmp_path, pki, open_registry, s3_server, short) as fleet:
        image = push_test_image(fleet.registry, layer_sizes=(1000,))
        path = f"/v2/{image.repository}/manifests/latest?ns={fleet.registry.name_port}"
        by_tag = f"/v2/{image.repository}/manifests/latest"

        def pull_at_once(method: str = "GET") -> list[tuple[int, str, str]]:
            barrier = threading.Barrier(len(fleet.replicas))
            results: dict[str, tuple[int, str, str]] = {}

            def client(replica: Appliance) -> None:
                barrier.wait()
                results[replica.workdir.name] = get_manifest(replica, path, image.media_type, method)

            threads = [threading.Thread(target=client, args=(r,)) for r in fleet.replicas]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            return [results[r.workdir.name] for r in fleet.replicas]

        def asked_by_tag() -> list[str]:
            return [r.method for r in fleet.registry.requests() if r.path == by_tag]

        for replica in fleet.replicas:  # the tag cached on every replica
            assert get_manifest(replica, path, image.media_type)[:2] == (200, image.manifest_digest)
        time.sleep(TAG_TTL + 0.5)
        fleet.registry.clear_requests()
        served = pull_at_once()
        assert served == [(200, image.manifest_digest, image.manifest_digest)] * 3, served
        assert asked_by_tag() == ["HEAD"], fleet.registry.requests()
        # Clients that only HEAD the tag (as docker pull does first): the same single check.
        time.sleep(TAG_TTL + 0.5)
        fleet.registry.clear_requests()
        served = pull_at_once("HEAD")
        assert served == [(200, sha256(b""), image.manifest_digest)] * 3, served
        assert asked_by_tag() == ["HEAD"], fleet.registry.requests()

        # The tag moves upstream: once stale again, every replica serves the new manifest, the
        # upstream still asked by tag by one replica only (its HEAD, and its GET of the new one).
        moved = push_test_image(fleet.registry, image.repository, layer_sizes=(1500,), seed=7)
        assert moved.manifest_digest != image.manifest_digest
        time.sleep(TAG_TTL + 0.5)
        fleet.registry.clear_requests()
        served = pull_at_once()
        assert served == [(200, moved.manifest_digest, moved.manifest_digest)] * 3, served
        assert sorted(asked_by_tag()) in (["HEAD"], ["GET", "HEAD"]), fleet.registry.requests()
        # And fresh: nobody asks anything.
        fleet.registry.clear_requests()
        for replica in fleet.replicas:
            assert get_manifest(replica, path, image.media_type)[:2] == (200, moved.manifest_digest)
        assert [r for r in fleet.registry.requests() if r.is_manifest] == []
