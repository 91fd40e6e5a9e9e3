"""Issue 4 acceptance: the cache against a real registry behind a misbehaving upstream, real skopeo."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures import ALICE
from tests.fixtures.appliance import ROOT, Appliance, UpstreamSpec
from tests.fixtures.badupstream import BadUpstream, Mode
from tests.fixtures.clients import ClientResult, curl, skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import OTHER_HOST, TestPKI
from tests.fixtures.registry import UpstreamRegistry

pytestmark = pytest.mark.e2e


@pytest.fixture
def bad(open_registry: UpstreamRegistry, pki: TestPKI) -> Iterator[BadUpstream]:
    with BadUpstream(open_registry, pki) as upstream:
        yield upstream


def _appliance(
    tmp_path: Path, pki: TestPKI, bad: BadUpstream, name: str = "appliance", **toml: object
) -> Appliance:
    spec = UpstreamSpec(bad.name_port, bad.host_port)
    return Appliance(tmp_path / name, [spec], upstream_ca=pki.ca_file, extra_toml=toml)


def _pull(appliance: Appliance, bad: BadUpstream, image: ImageInfo, dest: Path) -> ClientResult:
    return skopeo_copy(
        f"docker://{image.reference(bad.name_port)}",
        f"dir:{dest}",
        https_proxy=appliance.url,
        cert_dir=appliance.cert_dir(),
        timeout=120,
    )


def _cached_blob_files(appliance: Appliance) -> dict[str, int]:
    data = appliance.cache_dir / "data"
    if not data.exists():
        return {}
    return {
        f"sha256:{p.name}": p.stat().st_size for p in data.rglob("*") if p.is_file() and len(p.name) == 64
    }


def _eventually_cached(appliance: Appliance, digests: tuple[str, ...], within: float = 10.0) -> bool:
    """Whether every digest is in the cache within ``within`` s: a client completes once its bytes
    are verified, and the commit (fsync, rename, index) follows a moment later."""
    deadline = time.monotonic() + within
    while not set(digests) <= set(_cached_blob_files(appliance)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _statuses(appliance: Appliance, image: ImageInfo, kind: str) -> list[str]:
    return [e.split()[0] for e in appliance.events() if f" {kind} " in e and image.repository in e]


def test_second_pull_is_served_from_cache_and_survives_the_upstream_going_away(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(60_000, 50_000, 40_000))
    with _appliance(tmp_path, pki, bad) as appliance:
        assert _pull(appliance, bad, image, tmp_path / "one").check().digest == image.manifest_digest
        assert bad.blob_requests() == len(image.layer_digests) + 1  # layers and config
        bad.clear()
        assert _pull(appliance, bad, image, tmp_path / "two").check().digest == image.manifest_digest
        assert bad.blob_requests() == 0

        bad.stop()  # the upstream is gone: connections are refused
        offline = _pull(appliance, bad, image, tmp_path / "three").check()
        assert offline.digest == image.manifest_digest
        manifests = _statuses(appliance, image, "manifest")
        assert manifests[0] == "MISS" and manifests[-1] == "STALE", manifests
        blobs = _statuses(appliance, image, "blob")
        assert blobs[-len(image.layer_digests) :] == ["HIT"] * len(image.layer_digests), blobs
        assert "serving the cached manifest" in appliance.log_text()


@pytest.mark.parametrize("mode", [Mode.DOWN, Mode.RATE_LIMITED])
def test_a_failing_or_rate_limited_upstream_gets_the_stale_tag_manifest(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
    mode: Mode,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(20_000,))
    with _appliance(tmp_path, pki, bad) as appliance:
        _pull(appliance, bad, image, tmp_path / "one").check()
        bad.mode = mode
        assert _pull(appliance, bad, image, tmp_path / "two").check().digest == image.manifest_digest
        assert _statuses(appliance, image, "manifest")[-1] == "STALE"


def test_twenty_concurrent_pulls_fetch_each_blob_from_upstream_once(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(1_500_000, 1_000_000, 500_000))
    bad.mode = Mode.SLOW  # keep the fills running while the other clients arrive
    bad.slow_delay = 0.01
    with _appliance(tmp_path, pki, bad) as appliance:
        appliance.cert_dir()
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda n: _pull(appliance, bad, image, tmp_path / f"c{n}"), range(20)))
        for result in results:
            assert result.check().digest == image.manifest_digest
        for digest in image.layer_digests:
            assert bad.blob_requests(digest) == 1, (digest, dict(bad.blob_gets))
        for n in range(20):
            for digest in image.layer_digests:
                assert (tmp_path / f"c{n}" / digest.removeprefix("sha256:")).stat().st_size > 0
        statuses = _statuses(appliance, image, "blob")
        assert "COALESCED" in statuses or statuses.count("HIT") > 0


@pytest.mark.parametrize("mode", [Mode.CORRUPT, Mode.CUT])
def test_wrong_or_cut_off_upstream_bytes_are_never_cached_and_the_next_good_pull_works(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
    mode: Mode,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(300_000, 200_000))
    with _appliance(tmp_path, pki, bad) as appliance:
        bad.mode = mode
        failed = _pull(appliance, bad, image, tmp_path / "bad")
        assert not failed.ok
        assert not set(image.layer_digests) & set(_cached_blob_files(appliance))
        assert any(e.startswith("ERROR") for e in appliance.events()), appliance.events()
        bad.mode = Mode.OK
        good = _pull(appliance, bad, image, tmp_path / "good").check()
        assert good.digest == image.manifest_digest
        assert _eventually_cached(appliance, image.layer_digests)


def _cache_cli(appliance: Appliance, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "cache", *args, "--config", str(appliance.config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_kill_9_during_a_large_fill_leaves_a_consistent_cache_and_the_pull_then_succeeds(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(4_000_000, 100_000))
    bad.mode = Mode.SLOW
    bad.slow_delay = 0.02
    appliance = _appliance(tmp_path, pki, bad)
    appliance.start()
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_pull, appliance, bad, image, tmp_path / "interrupted")
            deadline = time.monotonic() + 60
            tmp_dir = appliance.cache_dir / "tmp"
            while time.monotonic() < deadline:
                partial = [p for p in tmp_dir.glob("*") if p.is_file() and p.stat().st_size > 200_000]
                if partial:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("no fill in progress appeared")
            appliance.kill()
            assert not pending.result().ok
        verify = _cache_cli(appliance, "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        bad.mode = Mode.OK
        appliance.start()
        assert _pull(appliance, bad, image, tmp_path / "after").check().digest == image.manifest_digest
    finally:
        appliance.stop()
    verify = _cache_cli(appliance, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert image.layer_digests[0] in _cached_blob_files(appliance)


def test_size_cap_is_never_exceeded_and_least_recently_used_images_go_first(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    images = [push_test_image(open_registry, layer_sizes=(12_000_000, 12_000_000)) for _ in range(5)]
    cap = 50 * 1024 * 1024
    with _appliance(tmp_path, pki, bad, cache={"max_size": "50m", "min_free_disk": 0}) as appliance:
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                files = [p for p in appliance.cache_dir.rglob("*") if p.is_file() and "sqlite" not in p.name]
                total = 0
                for path in files:
                    with contextlib.suppress(FileNotFoundError):
                        total += path.stat().st_size
                peak = max(peak, total)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for n, image in enumerate(images):
                _pull(appliance, bad, image, tmp_path / f"p{n}").check()
        finally:
            stop.set()
            sampler.join()
        assert 0 < peak <= cap, peak
        assert _eventually_cached(appliance, images[-1].layer_digests)
        cached = set(_cached_blob_files(appliance))
        assert not set(images[0].layer_digests) & cached


def test_prefetch_warms_the_cache_so_a_pull_needs_no_upstream(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(
        open_registry, layer_sizes=(70_000, 30_000), platforms=("linux/amd64", "linux/arm64")
    )
    with _appliance(tmp_path, pki, bad) as appliance:
        warmed = subprocess.run(
            [
                sys.executable,
                "-m",
                "appliance",
                "prefetch",
                image.reference(bad.name_port),
                "--config",
                str(appliance.config_path),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert warmed.returncode == 0, warmed.stderr
        assert "3 manifests" in warmed.stdout, warmed.stdout  # the index and both platforms
        bad.stop()
        pulled = _pull(appliance, bad, image, tmp_path / "offline").check()
        mine = next(p for p in image.platforms if p.layer_digests == image.layer_digests)
        assert pulled.digest == mine.manifest_digest  # skopeo copies this machine's platform
        assert set(_statuses(appliance, image, "blob")[-len(image.layer_digests) :]) == {"HIT"}


def test_cache_commands_use_the_running_engine_and_fall_back_to_the_directory_when_it_is_stopped(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(10_000,))
    with _appliance(tmp_path, pki, bad) as appliance:
        _pull(appliance, bad, image, tmp_path / "one").check()
        live = _cache_cli(appliance, "verify")
        assert live.returncode == 0 and "consistent" in live.stdout
        assert "engine not running" not in live.stderr  # answered by the engine over its socket
    offline = _cache_cli(appliance, "verify")
    assert offline.returncode == 0 and "engine not running" in offline.stderr
    listing = _cache_cli(appliance, "ls")
    assert listing.returncode == 0 and image.repository in listing.stdout and "latest" in listing.stdout
    purged = _cache_cli(appliance, "purge", image.reference(bad.name_port))
    assert purged.returncode == 0 and "purged" in purged.stdout
    assert not set(image.layer_digests) & set(_cached_blob_files(appliance))
    assert image.repository not in _cache_cli(appliance, "ls").stdout


def test_cdn_redirects_are_followed_by_the_engine_without_credentials_and_cached_by_digest(
    tmp_path: Path, pki: TestPKI, htpasswd_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(htpasswd_registry, layer_sizes=(80_000, 20_000))
    with BadUpstream(htpasswd_registry, pki) as cdn_upstream:
        cdn_upstream.mode = Mode.REDIRECT
        spec = UpstreamSpec(cdn_upstream.name_port, cdn_upstream.host_port, credentials=ALICE)
        other = f"{OTHER_HOST}:{cdn_upstream.port}={cdn_upstream.host_port}"
        with Appliance(
            tmp_path / "appliance", [spec], upstream_ca=pki.ca_file, extra_resolve=[other]
        ) as appliance:
            first = _pull(appliance, cdn_upstream, image, tmp_path / "one").check()
            assert first.digest == image.manifest_digest
            assert len(cdn_upstream.cdn_gets) == len(image.blob_digests)
            assert all(auth is None for _path, auth in cdn_upstream.cdn_gets), cdn_upstream.cdn_gets
            cdn_upstream.clear()
            cdn_upstream.cdn_gets.clear()
            second = _pull(appliance, cdn_upstream, image, tmp_path / "two").check()
            assert second.digest == image.manifest_digest
            assert cdn_upstream.blob_requests() == 0 and cdn_upstream.cdn_gets == []
            assert "s3cr3t-signature" not in appliance.log_text()


def test_an_unreachable_upstream_is_not_retried_on_every_request_of_a_cached_pull(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(20_000, 10_000))
    with _appliance(tmp_path, pki, bad) as appliance:
        _pull(appliance, bad, image, tmp_path / "one").check()
        bad.mode = Mode.RESET
        offline = _pull(appliance, bad, image, tmp_path / "two").check()
        assert offline.digest == image.manifest_digest
        again = _pull(appliance, bad, image, tmp_path / "three").check()
        assert again.digest == image.manifest_digest
        # The first failure marks the registry unreachable; the rest of that pull and the next one
        # skip it.
        assert bad.resets <= 2, bad.resets
        assert "not retried for another" in appliance.log_text()


def test_range_requests_through_the_proxy_are_answered_from_the_cache(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(3_000_000,))
    digest = image.layer_digests[0]
    with _appliance(tmp_path, pki, bad) as appliance:
        url = f"https://{bad.name_port}/v2/{image.repository}/blobs/{digest}"
        ca = appliance.cert_dir() / "ca.crt"
        full = curl(url, proxy=appliance.url, cacert=ca)
        assert full.status == 200 and "sha256:" + hashlib.sha256(full.body).hexdigest() == digest
        body = full.body
        bad.clear()
        part = curl(url, proxy=appliance.url, cacert=ca, headers={"Range": "bytes=1000-1999"})
        assert part.status == 206 and part.body == body[1000:2000]
        assert part.headers["content-range"] == f"bytes 1000-1999/{len(body)}"
        tail = curl(url, proxy=appliance.url, cacert=ca, headers={"Range": "bytes=-500"})
        assert tail.status == 206 and tail.body == body[-500:]
        past = curl(url, proxy=appliance.url, cacert=ca, headers={"Range": f"bytes={len(body) + 10}-"})
        assert past.status == 416
        assert bad.blob_requests() == 0
