"""Issue 15, item 4 end to end: the real engine with its cache on a real full filesystem (a small tmpfs).

Cached images are still pulled (manifests included: a tag's revalidation writes to the index),
concurrent cold pulls all complete (what cannot be stored is passed through, a fill that hits ENOSPC
passes the rest to its clients), and ``appliance status``, ``appliance stats`` and ``/metrics`` say
the cache disk is full.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.appliance import ROOT, Appliance, UpstreamSpec
from tests.fixtures.clients import skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tests.fixtures.tmpfs import MIB, fill_up, small_tmpfs

pytestmark = pytest.mark.e2e


@pytest.fixture
def engine_on_small_disk(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry
) -> Iterator[Appliance]:
    workdir = tmp_path / "a"
    with small_tmpfs(workdir / "cache", 24 * MIB):
        spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
        # The setting: no watermark, so only the disk itself says no.
        appliance = Appliance(
            workdir, [spec], upstream_ca=pki.ca_file, extra_toml={"cache": {"min_free_disk": "0"}}
        )
        with appliance:
            yield appliance


def _pull(appliance: Appliance, registry: UpstreamRegistry, image: ImageInfo, dest: Path) -> None:
    result = skopeo_copy(
        f"docker://{image.reference(registry.name_port)}",
        f"dir:{dest}",
        https_proxy=appliance.url,
        cert_dir=appliance.cert_dir(),
        timeout=120,
    ).check()
    assert result.digest == image.manifest_digest
    for digest in image.blob_digests:  # skopeo checked them too; the files are what it wrote
        assert (dest / digest.split(":", 1)[1]).is_file()


def _cli(appliance: Appliance, command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "appliance", command, "--socket", str(appliance.control_socket)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def _metrics(appliance: Appliance) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{appliance.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_with_the_cache_disk_full_cached_and_new_pulls_all_complete_and_status_says_full(
    tmp_path: Path,
    engine_on_small_disk: Appliance,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    appliance = engine_on_small_disk
    cached = push_test_image(open_registry, layer_sizes=(300_000, 200_000))
    _pull(appliance, open_registry, cached, tmp_path / "warm")
    cold = [push_test_image(open_registry, layer_sizes=(1_500_000, 900_000)) for _ in range(8)]
    assert "cache disk    ok" in _cli(appliance, "status")

    # Leave a little room: some fills are admitted and then hit ENOSPC part-way.
    fill_up(appliance.cache_dir, leave=3 * MIB)
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(_pull, appliance, open_registry, image, tmp_path / f"cold-{n}")
            for n, image in enumerate(cold)
        ]
        for future in futures:
            future.result()
    fill_up(appliance.cache_dir, name="filler-2")  # and now nothing at all
    _pull(appliance, open_registry, cached, tmp_path / "again")  # the tag is revalidated: index writes
    _pull(appliance, open_registry, cold[0], tmp_path / "cold-again")

    status = _cli(appliance, "status")
    assert "cache disk    FULL: serving cached content, passing the rest through uncached" in status
    assert "disk    FULL" in _cli(appliance, "stats")
    samples = _metrics(appliance)
    assert samples[("appliance_cache_disk_full", ())] == 1
    assert samples[("appliance_cache_disk_state", (("state", "full"),))] == 1
    events = appliance.events()
    errors = [e for e in events if e.split()[0] == "ERROR"]
    assert errors == []
    assert any(e.split()[0] in ("HIT", "REVALIDATED") and cached.repository in e for e in events)


def test_the_engine_restarts_on_a_full_cache_disk_and_serves_what_it_has(
    tmp_path: Path,
    engine_on_small_disk: Appliance,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    appliance = engine_on_small_disk
    image = push_test_image(open_registry, layer_sizes=(300_000, 200_000))
    _pull(appliance, open_registry, image, tmp_path / "warm")
    appliance.kill()  # no orderly shutdown: the index keeps its WAL, the lock file its pid
    fill_up(appliance.cache_dir)

    appliance.start()
    _pull(appliance, open_registry, image, tmp_path / "after")

    statuses = [e.split()[0] for e in appliance.events() if image.repository in e and " blob " in e]
    assert statuses[-len(image.blob_digests) :] == ["HIT"] * len(image.blob_digests)
    assert "cache disk    FULL" in _cli(appliance, "status")
