"""``make chaos`` (issue 15): kill -9 in the middle of fills, a full cache filesystem, upstream storms.

What must hold through all of it: no cache entry is ever corrupt (``cache verify`` re-hashes every
file), and every pull either completes with the right bytes (skopeo checks each blob's digest, and
so do we) or fails cleanly (the client gets an error, never wrong bytes).  Loopback only, bounded
(fixed rounds, client timeouts) and self-stopping.  Not part of ``make test``: run with
``make chaos`` (APPLIANCE_CHAOS=1); the full-filesystem part needs root to mount a tmpfs.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures.appliance import ROOT, Appliance, UpstreamSpec
from tests.fixtures.badupstream import BadUpstream, Mode
from tests.fixtures.clients import ClientResult, skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tests.fixtures.tmpfs import MIB, fill_up, small_tmpfs

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(os.environ.get("APPLIANCE_CHAOS") != "1", reason="run by `make chaos`"),
]

KILLS = 20
SEED = int(os.environ.get("APPLIANCE_CHAOS_SEED", "15"))


@pytest.fixture
def bad(open_registry: UpstreamRegistry, pki: TestPKI) -> Iterator[BadUpstream]:
    with BadUpstream(open_registry, pki) as upstream:
        yield upstream


def _appliance(workdir: Path, pki: TestPKI, bad: BadUpstream, **cache: object) -> Appliance:
    spec = UpstreamSpec(bad.name_port, bad.host_port)
    return Appliance(workdir, [spec], upstream_ca=pki.ca_file, extra_toml={"cache": dict(cache)})


def _pull(appliance: Appliance, bad: BadUpstream, image: ImageInfo, dest: Path, timeout: float = 60) -> bool:
    """True: the image arrived with the right bytes.  False: a clean failure.  Wrong bytes: raises."""
    result: ClientResult = skopeo_copy(
        f"docker://{image.reference(bad.name_port)}",
        f"dir:{dest}",
        https_proxy=appliance.url,
        cert_dir=appliance.cert_dir(),
        timeout=timeout,
    )
    if not result.ok:
        return False
    assert result.digest == image.manifest_digest, result.output
    for digest in image.blob_digests:
        algorithm, hex_ = digest.split(":", 1)
        assert hashlib.new(algorithm, (dest / hex_).read_bytes()).hexdigest() == hex_, digest
    return True


def _pull_within(appliance: Appliance, bad: BadUpstream, image: ImageInfo, dest: Path, within: float) -> bool:
    deadline = time.monotonic() + within
    attempt = 0
    while not _pull(appliance, bad, image, dest.with_name(f"{dest.name}-{attempt}"), 30):
        if time.monotonic() > deadline:
            return False
        attempt += 1
        time.sleep(1)  # a retry interval, as a user's would be; not a synchronisation
    return True


def _verify_offline(appliance: Appliance) -> str:
    """``appliance cache verify`` on the stopped engine's cache; the summary line."""
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "cache", "verify", "--config", str(appliance.config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.stdout.strip().splitlines()[-1]


def _corrupt(summary: str) -> int:
    return int(summary.split(" corrupt", 1)[0].rsplit(" ", 1)[1])


def _fill_in_progress(appliance: Appliance, within: float = 20.0) -> bool:
    tmp = appliance.cache_dir / "tmp"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if tmp.is_dir() and any(name.endswith(".part") for name in os.listdir(tmp)):
            return True
        time.sleep(0.005)
    return False


def test_kill_9_at_random_points_in_fills_never_leaves_a_corrupt_entry(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    rng = random.Random(SEED)
    images = [push_test_image(open_registry, layer_sizes=(2_000_000, 1_000_000, 500_000)) for _ in range(4)]
    bad.mode = Mode.SLOW  # fills last long enough to be killed in the middle
    bad.slow_delay = 0.01
    appliance = _appliance(tmp_path / "a", pki, bad)
    kills_in_fills = 0
    for round_ in range(KILLS):
        appliance.start()
        image = images[round_ % len(images)]
        with ThreadPoolExecutor(1) as pool:
            pulling = pool.submit(_pull, appliance, bad, image, tmp_path / f"pull-{round_}", 30)
            if _fill_in_progress(appliance):
                kills_in_fills += 1
                # A random point of the fill: the delay is the randomness, not a synchronisation.
                time.sleep(rng.uniform(0, 0.3))
            appliance.kill()
            pulling.result()  # True or a clean False: _pull raises on wrong bytes
        assert _corrupt(_verify_offline(appliance)) == 0
    assert kills_in_fills >= KILLS // 2, "the kills did not land in fills"

    bad.mode = Mode.OK
    with appliance:
        for n, image in enumerate(images):
            assert _pull(appliance, bad, image, tmp_path / f"final-{n}")
    summary = _verify_offline(appliance)
    assert summary.startswith("consistent"), summary


def test_a_full_cache_filesystem_under_concurrent_pulls_and_kills_serves_every_pull(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    rng = random.Random(SEED + 1)
    images = [push_test_image(open_registry, layer_sizes=(1_500_000, 700_000)) for _ in range(10)]
    workdir = tmp_path / "a"
    with small_tmpfs(workdir / "cache", 32 * MIB):
        appliance = _appliance(workdir, pki, bad, min_free_disk="0")
        for round_ in range(4):
            appliance.start()
            fill_up(appliance.cache_dir, name=f"filler-{round_}", leave=rng.randrange(0, 6 * MIB))
            with ThreadPoolExecutor(5) as pool:
                results = list(
                    pool.map(
                        lambda n, r=round_: _pull(appliance, bad, images[n], tmp_path / f"r{r}-{n}"),
                        rng.sample(range(len(images)), 5),
                    )
                )
            assert all(results), "a pull failed on a full cache disk (the upstream was fine)"
            appliance.kill()
            assert _corrupt(_verify_offline(appliance)) == 0
            for filler in appliance.cache_dir.glob("filler-*"):
                if rng.random() < 0.5:
                    filler.unlink()  # sometimes room comes back
        with appliance:
            for n, image in enumerate(images):
                assert _pull(appliance, bad, image, tmp_path / f"final-{n}")
        assert _corrupt(_verify_offline(appliance)) == 0


STORM = (Mode.CUT, Mode.DOWN, Mode.RATE_LIMITED, Mode.RESET, Mode.HANG, Mode.CORRUPT, Mode.SLOW, Mode.OK)


def test_upstream_storms_give_every_pull_the_right_bytes_or_a_clean_error(
    tmp_path: Path,
    pki: TestPKI,
    bad: BadUpstream,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    rng = random.Random(SEED + 2)
    images = [push_test_image(open_registry, layer_sizes=(800_000, 300_000)) for _ in range(6)]
    bad.slow_delay = 0.005
    # A hung upstream is given up on after 3 s (the default read timeout is the seed's 60 s).
    bad.hang_seconds = 10.0
    spec = UpstreamSpec(bad.name_port, bad.host_port)
    appliance = Appliance(
        tmp_path / "a", [spec], upstream_ca=pki.ca_file, extra_toml={"timeouts": {"proxy_read": "3s"}}
    )
    outcomes: list[bool] = []
    with appliance:
        for round_ in range(12):
            bad.mode = rng.choice(STORM)
            with ThreadPoolExecutor(3) as pool:
                outcomes += pool.map(
                    lambda n, r=round_: _pull(appliance, bad, images[n], tmp_path / f"s{r}-{n}", 30),
                    rng.sample(range(len(images)), 3),
                )
        bad.mode = Mode.OK
        # The engine may still skip the registry for a while (after a connection failure, or a
        # 429's Retry-After): each image must come through once that is over.
        for n, image in enumerate(images):
            assert _pull_within(appliance, bad, image, tmp_path / f"after-{n}", within=90)
    assert False in outcomes  # the storms did fail some pulls (cleanly: _pull raises on wrong bytes)
    summary = _verify_offline(appliance)
    assert summary.startswith("consistent"), summary
