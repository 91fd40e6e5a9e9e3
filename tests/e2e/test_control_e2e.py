"""Issue 5 acceptance: the control socket of a real `appliance run`, during real pulls through it."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance import protocol as p
from appliance.control.client import ControlClient, ControlError, EventStream
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.clients import skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.process import require_binary
from tests.fixtures.registry import RegistryFactory, UpstreamRegistry

pytestmark = pytest.mark.e2e


def _appliance(workdir: Path, registry: UpstreamRegistry, pki: TestPKI, **kwargs: object) -> Appliance:
    spec = UpstreamSpec(registry.name_port, registry.host_port)
    return Appliance(workdir, [spec], upstream_ca=pki.ca_file, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def appliance(tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry) -> Iterator[Appliance]:
    # Exact per-request accounting (one MISS per blob, then one HIT): pull-ahead, which turns most
    # first-pull MISSes into HIT or COALESCED, has its own tests.
    with _appliance(tmp_path / "a", open_registry, pki, extra_toml={"cache": {"pull_ahead": 0}}) as running:
        yield running


def _pull(appliance: Appliance, registry: UpstreamRegistry, image: ImageInfo, dest: Path) -> float:
    result = skopeo_copy(
        f"docker://{image.reference(registry.name_port)}",
        f"dir:{dest}",
        https_proxy=appliance.url,
        cert_dir=appliance.cert_dir(),
    ).check()
    assert result.digest == image.manifest_digest
    return result.duration


class Collector:
    """Reads an event stream into a list in the background."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.events: list[p.EventRecord] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for batch in self.stream:
            self.events.extend(batch.events)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"events never matched; got {[(e.status, e.kind) for e in self.events]}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.stream.close()
        self.task.cancel()


def _blob_gets(events: list[p.EventRecord], image: ImageInfo) -> list[p.EventRecord]:
    return [
        e
        for e in events
        if e.kind is p.EventKind.BLOB and e.method == "GET" and e.repository == image.repository
    ]


async def test_events_show_one_miss_then_one_hit_per_blob_and_stats_agree(
    tmp_path: Path, appliance: Appliance, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(40_000, 30_000, 20_000))
    async with ControlClient(appliance.control_socket) as client:
        before = await client.stats()
        stream = await client.events(p.EventFilter(registries=(open_registry.name_port,)))
        collector = Collector(stream)
        try:
            await asyncio.to_thread(_pull, appliance, open_registry, image, tmp_path / "first")
            await collector.wait_for(
                lambda: len(_blob_gets(collector.events, image)) >= len(image.blob_digests)
            )
            first = _blob_gets(collector.events, image)
            assert sorted(e.reference for e in first) == sorted(image.blob_digests)
            assert {e.status for e in first} == {p.EventStatus.MISS}
            collector.events.clear()

            await asyncio.to_thread(_pull, appliance, open_registry, image, tmp_path / "second")
            await collector.wait_for(
                lambda: len(_blob_gets(collector.events, image)) >= len(image.blob_digests)
            )
            second = _blob_gets(collector.events, image)
            assert sorted(e.reference for e in second) == sorted(image.blob_digests)
            assert {e.status for e in second} == {p.EventStatus.HIT}
        finally:
            await collector.close()
        after = await client.stats()
    registry = next(r for r in after.registries if r.registry == open_registry.name_port)
    blob = {(c.status, c.kind): c for c in after.requests if c.registry == open_registry.name_port}
    n = len(image.blob_digests)
    assert blob[(p.EventStatus.MISS, p.EventKind.BLOB)].count == n
    assert blob[(p.EventStatus.HIT, p.EventKind.BLOB)].count >= n  # HEADs that hit count too
    assert after.totals.misses - before.totals.misses >= n
    assert registry.counters.bytes_from_cache >= image.total_size
    assert registry.counters.bytes_from_upstream >= image.total_size
    assert registry.cache_bytes >= image.total_size
    assert after.totals.hit_ratio > 0


async def test_stuck_subscriber_does_not_slow_a_pull_and_its_drops_are_counted(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    sizes = (400_000, 300_000, 200_000)
    warm, baseline_image, stuck_image = (push_test_image(open_registry, layer_sizes=sizes) for _ in range(3))
    with _appliance(tmp_path / "a", open_registry, pki, env={"APPLIANCE_EVENT_QUEUE": "8"}) as appliance:
        await asyncio.to_thread(_pull, appliance, open_registry, warm, tmp_path / "warm")
        baseline = await asyncio.to_thread(_pull, appliance, open_registry, baseline_image, tmp_path / "base")

        stuck = _stuck_subscriber(appliance.control_socket)
        try:
            # Enough events to fill the socket buffers behind the stuck reader, so its queue overflows.
            await asyncio.to_thread(_flood, appliance, open_registry.name_port, warm, 3000)
            async with ControlClient(appliance.control_socket) as client:
                stalled = await client.stats()
                assert stalled.events.subscribers == 1
                assert stalled.events.queue_size == 8
                assert stalled.events.dropped_total > 0
                with_stuck = await asyncio.to_thread(
                    _pull, appliance, open_registry, stuck_image, tmp_path / "stuck"
                )
                # Still stuck: more traffic keeps overflowing its bounded queue.
                await asyncio.to_thread(_flood, appliance, open_registry.name_port, warm, 100)
                later = await client.stats()
        finally:
            stuck.close()
    assert later.events.dropped_total > stalled.events.dropped_total
    # Generous slack: both are a few hundred ms on loopback; a blocked proxy would take >= 30 s.
    assert with_stuck < baseline * 3 + 2.0, (baseline, with_stuck)


def _stuck_subscriber(path: Path) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.sendall(
        f"GET {p.EVENTS} HTTP/1.1\r\nHost: appliance\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _flood(appliance: Appliance, registry: str, image: ImageInfo, count: int) -> None:
    """``count`` cached-blob HEADs in mirror mode: each is a HIT event, none goes upstream."""
    import http.client

    segment = registry.replace(":", "_")
    path = f"/v2/{segment}/{image.repository}/blobs/{image.layer_digests[0]}"
    conn = http.client.HTTPConnection("127.0.0.1", appliance.port, timeout=10)
    try:
        for _ in range(count):
            conn.request("HEAD", path)
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 200, answer.status
    finally:
        conn.close()


async def test_registry_added_through_the_socket_is_intercepted_without_restart(
    tmp_path: Path,
    pki: TestPKI,
    open_registry: UpstreamRegistry,
    registry_factory: RegistryFactory,
    push_test_image: ImagePusher,
) -> None:
    late = registry_factory()
    image = push_test_image(late, layer_sizes=(10_000,))
    resolve = [f"{late.name_port}={late.host_port}"]
    with _appliance(tmp_path / "a", open_registry, pki, extra_resolve=resolve) as appliance:
        original = appliance.config_path.read_text()
        pid = appliance.process.pid if appliance.process else None
        async with ControlClient(appliance.control_socket) as client:
            for bad in ({"host": "not a host"}, {"host": "x.example", "mirror": True}):
                with pytest.raises(ControlError) as caught:
                    await client.add_registry(bad)
                assert caught.value.code is p.ErrorCode.INVALID_CONFIG
                assert appliance.config_path.read_text() == original

            change = await client.add_registry({"host": late.name_port})
            assert change.applied, change
            text = appliance.config_path.read_text()
            assert "# written by the test fixture" in text
            assert f'host = "{late.name_port}"' in text
            assert text.startswith(original.split("[[registries]]")[0])

            await asyncio.to_thread(_pull, appliance, late, image, tmp_path / "late")
            status = await client.status()
        assert (
            appliance.process is not None
            and appliance.process.pid == pid
            and appliance.process.poll() is None
        )
        assert late.blob_requests(image.repository)  # fetched through the appliance's cache...
        late_status = next(r for r in status.registries if r.host == late.name_port)
        assert late_status.requests > 0  # ...as an intercepted registry, with events


def test_socket_is_0600_and_another_user_cannot_connect(appliance: Appliance) -> None:
    setpriv = require_binary("setpriv")
    if os.getuid() != 0:
        pytest.skip("dropping privileges needs root")
    st = os.stat(appliance.control_socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    # Reach the socket through a directory anyone may traverse, so only the socket's mode decides.
    shared = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))
    try:
        shared.chmod(0o711)
        link = shared / "control.sock"
        os.link(appliance.control_socket, link)
        open_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        open_sock.bind(str(shared / "open.sock"))
        open_sock.listen(1)
        os.chmod(shared / "open.sock", 0o666)
        probe = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1]); print('connected')\n"
            "except PermissionError: print('denied')\n"
        )

        def as_nobody(path: Path) -> str:
            argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe]
            done = subprocess.run([*argv, str(path)], capture_output=True, text=True, timeout=30)
            return done.stdout.strip() or done.stderr

        assert as_nobody(shared / "open.sock") == "connected"  # the probe can tell the difference
        assert as_nobody(link) == "denied"
        open_sock.close()
    finally:
        for child in shared.iterdir():
            child.unlink()
        shared.rmdir()


async def test_metrics_parse_and_match_the_events_of_a_scripted_pull(
    tmp_path: Path, appliance: Appliance, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(25_000, 15_000))
    await asyncio.to_thread(_pull, appliance, open_registry, image, tmp_path / "one")
    await asyncio.to_thread(_pull, appliance, open_registry, image, tmp_path / "two")
    async with ControlClient(appliance.control_socket) as client:
        stream = await client.events(replay=500)
        events: list[p.EventRecord] = []
        batches = aiter(stream)
        while len(events) < stream.hello.replayed:
            events.extend((await asyncio.wait_for(anext(batches), 10)).events)
        await stream.close()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{appliance.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    requests: dict[tuple[str, str, str], float] = {}
    nbytes: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (
                sample.labels.get("registry", ""),
                sample.labels.get("kind", ""),
                sample.labels.get("status", ""),
            )
            if sample.name == "appliance_cache_requests_total":
                requests[key] = sample.value
            elif sample.name == "appliance_cache_response_bytes_total":
                nbytes[key] = sample.value
    counted = collections.Counter((e.registry, str(e.kind), str(e.status)) for e in events)
    summed: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for e in events:
        summed[(e.registry, str(e.kind), str(e.status))] += e.bytes
    assert requests == {k: float(v) for k, v in counted.items()}
    assert nbytes == {k: float(v) for k, v in summed.items()}
    key = (open_registry.name_port, "blob", "MISS")
    assert requests[key] >= len(image.blob_digests)
