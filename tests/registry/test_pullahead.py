"""Pull-ahead: which blobs a manifest lists, and filling the rest once a client starts on them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from appliance import oci
from appliance.cache import BlobCache, FetchBlob
from appliance.config.model import CacheConfig
from appliance.errors import UpstreamError
from appliance.events import CacheStatus, Event, EventBus, RequestKind
from appliance.registry import pullahead
from appliance.registry.pullahead import Blob, PullAhead, blobs_of
from tests.cache.helpers import REG, REPO, Upstream, payload, read_all, sha256


async def _until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until ``condition()`` holds, checking it every loop turn or so: on state, not on time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def _manifest(config: dict[str, object], layers: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config, "layers": layers}
    ).encode()


def test_blobs_of_an_image_manifest_are_its_config_then_its_layers_once_each() -> None:
    body = _manifest(
        {"digest": "sha256:c", "size": 10},
        [{"digest": "sha256:a", "size": 5}, {"digest": "sha256:b"}, {"digest": "sha256:a", "size": 5}],
    )
    assert blobs_of(body, oci.OCI_MANIFEST) == (
        Blob("sha256:c", 10, layer=False),
        Blob("sha256:a", 5),
        Blob("sha256:b", None),
    )
    assert blobs_of(body, oci.DOCKER_MANIFEST_V2) == blobs_of(body, oci.OCI_MANIFEST)


def test_blobs_of_skips_foreign_layers_and_malformed_descriptors() -> None:
    body = _manifest(
        {"digest": "sha256:c", "size": -1},
        [
            {"digest": "sha256:w", "size": 5, "urls": ["https://mcr.example/w"]},
            {"digest": 7},
            "not a descriptor",
            {"size": 3},
            {"digest": "sha256:ok", "size": 1},
        ],
    )
    assert blobs_of(body, oci.OCI_MANIFEST) == (Blob("sha256:c", None, layer=False), Blob("sha256:ok", 1))


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        (b'{"manifests": [{"digest": "sha256:a"}]}', oci.OCI_INDEX),
        (b'{"manifests": []}', oci.DOCKER_MANIFEST_LIST),
        (b"{not json", oci.OCI_MANIFEST),
        (b"[1, 2]", oci.OCI_MANIFEST),
        (b'{"layers": "nope"}', oci.OCI_MANIFEST),
    ],
    ids=["oci-index", "docker-list", "bad-json", "not-an-object", "layers-not-a-list"],
)
def test_blobs_of_anything_but_an_image_manifest_is_nothing(body: bytes, media_type: str) -> None:
    assert blobs_of(body, media_type) == ()


class _Lab:
    """A real cache in a temp dir, and fake upstream answers (one per blob) that count fetches."""

    def __init__(self, cache: BlobCache, blobs: list[bytes], **upstream: object) -> None:
        self.cache = cache
        self.data = {sha256(b): b for b in blobs}
        self.upstreams = {d: Upstream(b, **upstream) for d, b in self.data.items()}  # type: ignore[arg-type]
        self.running = 0
        self.most_running = 0
        self.hold: asyncio.Event | None = None  # when set: fetches wait for it once started
        self.body = _manifest(
            {"digest": sha256(blobs[0]), "size": len(blobs[0])},
            [{"digest": sha256(b), "size": len(b)} for b in blobs[1:]],
        )

    def fetch_for(self, digest: str) -> FetchBlob:
        upstream = self.upstreams[digest]

        async def fetch() -> object:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            try:
                if self.hold is not None:
                    await self.hold.wait()
                return await upstream.fetch()
            finally:
                self.running -= 1

        return fetch  # type: ignore[return-value]

    def fetches(self) -> dict[str, int]:
        return {d: u.fetches for d, u in self.upstreams.items()}


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[BlobCache]:
    blob_cache = BlobCache.on_disk(
        tmp_path / "cache", CacheConfig(max_size=1 << 30, inactive=86400.0, min_free_disk=0)
    )
    await blob_cache.start()
    yield blob_cache
    await blob_cache.close()


async def test_a_blob_request_fills_the_other_blobs_of_the_manifest_once_each(cache: BlobCache) -> None:
    lab = _Lab(cache, [payload(1000 + i, i) for i in range(6)])
    bus = EventBus()
    seen: list[Event] = []
    bus.add_listener(seen.append)
    ahead = PullAhead(cache, per_image=2, events=bus)
    ahead.note_manifest(REG, REPO, "sha256:m", lab.body, oci.OCI_MANIFEST)
    first = list(lab.data)[1]  # the first layer (blob 0 is the config)
    lab.hold = asyncio.Event()
    ahead.on_blob(REG, REPO, first, lab.fetch_for)
    ahead.on_blob(REG, REPO, list(lab.data)[2], lab.fetch_for)  # the same image again: no second run
    # per_image at a time: two fetches start and are held ...
    await _until(lambda: lab.running >= 2)
    # ... and the other three wait for a slot.  Without the bound they would be on their way: their
    # index lookups went out with the first two's (one index thread, in order), so once a lookup
    # queued now has come back, theirs have too, and a few loop turns take them to their fetch.
    await cache.index.totals()
    for _ in range(50):
        await asyncio.sleep(0)
    assert lab.running == 2
    lab.hold.set()
    await ahead.wait_idle()
    assert lab.fetches() == {d: (0 if d == first else 1) for d in lab.data}
    assert ahead.fetched == 5
    assert lab.most_running == 2
    # Each blob fetched ahead is an event of its own: upstream traffic, under the pull-ahead's name.
    assert sorted(e.reference for e in seen) == sorted(d for d in lab.data if d != first)
    assert {(e.client, e.status, e.kind) for e in seen} == {
        ("pull-ahead", CacheStatus.MISS, RequestKind.BLOB)
    }
    assert all(e.bytes == len(lab.data[e.reference]) for e in seen)
    for digest, data in lab.data.items():
        if digest == first:
            continue
        hit = await cache.open(REG, digest)
        assert hit is not None, digest
        assert await read_all(hit.chunks()) == data
        await hit.close()


async def test_a_manifest_alone_or_a_stranger_blob_fetches_nothing(cache: BlobCache) -> None:
    lab = _Lab(cache, [payload(100, 1), payload(200, 2)])
    ahead = PullAhead(cache, per_image=4)
    ahead.note_manifest(REG, REPO, "sha256:m", lab.body, oci.OCI_MANIFEST)
    config, layer = list(lab.data)
    ahead.on_blob(REG, REPO, config, lab.fetch_for)  # the config: what an inspection reads
    ahead.on_blob(REG, REPO, "sha256:" + "0" * 64, lab.fetch_for)  # not in the manifest
    ahead.on_blob(REG, "other/repo", layer, lab.fetch_for)  # another repository
    ahead.on_blob("other.registry", REPO, layer, lab.fetch_for)  # another registry
    await ahead.wait_idle()
    assert set(lab.fetches().values()) == {0}


async def test_a_blob_request_long_after_the_manifest_fetches_nothing(cache: BlobCache) -> None:
    now = [1000.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    lab = _Lab(cache, [payload(100, 1), payload(200, 2)])
    ahead = PullAhead(cache, per_image=4, window=60.0, clock=clock)
    ahead.note_manifest(REG, REPO, "sha256:m", lab.body, oci.OCI_MANIFEST)
    now[0] += 61.0
    ahead.on_blob(REG, REPO, list(lab.data)[1], lab.fetch_for)
    await ahead.wait_idle()
    assert set(lab.fetches().values()) == {0}


async def test_pull_ahead_off_remembers_and_fetches_nothing(cache: BlobCache) -> None:
    lab = _Lab(cache, [payload(100, 1), payload(200, 2)])
    ahead = PullAhead(cache, per_image=0)
    assert not ahead.enabled
    ahead.note_manifest(REG, REPO, "sha256:m", lab.body, oci.OCI_MANIFEST)
    ahead.on_blob(REG, REPO, list(lab.data)[1], lab.fetch_for)
    await ahead.wait_idle()
    assert set(lab.fetches().values()) == {0}


async def test_one_failing_blob_does_not_stop_the_others(cache: BlobCache) -> None:
    blobs = [payload(100 + i, i) for i in range(4)]
    lab = _Lab(cache, blobs)
    broken = sha256(blobs[2])
    lab.upstreams[broken] = Upstream(blobs[2], fail_before=UpstreamError(REG, "upstream answered 500"))
    ahead = PullAhead(cache, per_image=1)
    ahead.note_manifest(REG, REPO, "sha256:m", lab.body, oci.OCI_MANIFEST)
    ahead.on_blob(REG, REPO, sha256(blobs[1]), lab.fetch_for)
    await ahead.wait_idle()
    assert ahead.fetched == 2  # the config and blob 3
    assert await cache.open(REG, broken) is None
    for data in (blobs[0], blobs[3]):
        hit = await cache.open(REG, sha256(data))
        assert hit is not None
        await hit.close()


async def test_the_memory_of_manifests_is_bounded(cache: BlobCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pullahead, "_PARSED_KEPT", 5)
    ahead = PullAhead(cache, per_image=4, remember=10)
    for i in range(20):
        lab = _Lab(cache, [payload(10, 100 + i), payload(10, 200 + i)])
        ahead.note_manifest(REG, REPO, f"sha256:m{i}", lab.body, oci.OCI_MANIFEST)
    assert len(ahead._images) == 10  # the most recent layers only
    assert len(ahead._parsed) == 5  # and the most recent parsed manifests


async def test_a_manifest_served_again_starts_a_new_pull_ahead_after_the_first_ended(
    cache: BlobCache,
) -> None:
    lab = _Lab(cache, [payload(1000 + i, 40 + i) for i in range(3)])
    ahead = PullAhead(cache, per_image=2)
    layer = list(lab.data)[1]
    ahead.note_manifest(REG, REPO, "sha256:m", lab.body, oci.OCI_MANIFEST)
    ahead.on_blob(REG, REPO, layer, lab.fetch_for)
    await ahead.wait_idle()
    assert ahead.fetched == 2
    await cache.purge(registry=REG)  # gone from the cache: a new pull of the same image starts cold
    ahead.note_manifest(REG, REPO, "sha256:m", lab.body, oci.OCI_MANIFEST)  # parsed once, not twice
    ahead.on_blob(REG, REPO, layer, lab.fetch_for)
    await ahead.wait_idle()
    assert ahead.fetched == 4
    assert lab.fetches() == {d: (0 if d == layer else 2) for d in lab.data}


async def test_close_cancels_a_pull_ahead_in_progress(cache: BlobCache) -> None:
    gate = asyncio.Event()
    lab = _Lab(cache, [payload(100_000, 1), payload(100_000, 2)], gate=gate)
    ahead = PullAhead(cache, per_image=4)
    ahead.note_manifest(REG, REPO, "sha256:m", lab.body, oci.OCI_MANIFEST)
    config, layer = list(lab.data)
    ahead.on_blob(REG, REPO, layer, lab.fetch_for)
    # Started for real: the config's body is flowing and held at the gate after its first chunk.
    await asyncio.wait_for(lab.upstreams[config].first_sent.wait(), 5)
    assert ahead.running == 1
    await asyncio.wait_for(ahead.close(), 5)
    assert ahead.running == 0
    assert ahead.fetched == 0  # cancelled while held, not finished
    assert lab.upstreams[config].sent < len(lab.data[config])
