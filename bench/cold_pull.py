"""2. Cold pull overhead: the appliance with an empty cache vs a direct pull, same image.

"Cold" is what a user meets when an image was never pulled through a running appliance: before
each timed appliance pull the cache is emptied through the control socket (`appliance cache purge
--all`, not timed). The first pull after a restart also pays the process's own warm-up (first TLS
contexts, lazy imports); it is measured separately, as a reported figure without a target.

A third figure is the floor (``bench.fill_floor``): a warm pull through the appliance while a bare
process receives, hashes and writes the same blobs from the upstream alongside.  That is what any
cache on this machine pays for a cold pull, with its own overhead taken out; reported without a
target, beside the cold figure, so a gap to the target can be split into what is inherent here
and what is the appliance's.  Distribution's pull-through cache, restarted with its storage wiped
before each pull (it has no purge), is the peer's cold pull, also reported without a target.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Callable

from bench.fill_floor import floor_pull
from bench.harness import Context, Metric, Target, interleave, median
from bench.peers import DistributionCache, appliance_for, restart_empty, settle
from bench.pulls import timed_pull
from bench.warm_pull import images
from tests.fixtures.appliance import Appliance
from tests.fixtures.process import FixtureError

NAME = "cold_pull"


def purge(appliance: Appliance) -> None:
    """Empty the cache of a running appliance, the way an operator would."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "cache",
            "purge",
            "--all",
            "--socket",
            str(appliance.control_socket),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise FixtureError(f"cache purge failed: {done.stderr.strip()}")


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    appliance = appliance_for(scratch / "appliance", lab.pki, upstream)
    distribution = DistributionCache(scratch / "distribution", lab.pki, upstream)
    metrics: list[Metric] = []
    appliance.start()
    distribution.start()
    try:
        trust = appliance.cert_dir()

        def through_appliance(empty: Callable[[Appliance], None], reference: str) -> float:
            """Empty the cache (purge, or restart with it wiped), then time one pull through it."""
            empty(appliance)
            return timed_pull(reference, scratch, cert_dir=trust, https_proxy=appliance.url)

        def through_distribution(reference: str) -> float:
            """Restart distribution's cache with its storage wiped (it has no purge), then time a pull."""
            distribution.stop()
            shutil.rmtree(distribution.storage, ignore_errors=True)
            distribution.start()
            seconds = timed_pull(reference, scratch, cert_dir=lab.pki.cert_dir)
            settle()  # it does not fsync: its writes would land on the next peer's pull
            return seconds

        for kind, layers in images(ctx).items():
            image = lab.image(kind, layers)
            cold = image.reference(upstream.name_port)
            fills: list[float] = []
            # Every peer leaves the cache warm (the cold ones fill it), which the floor's pull needs.
            timed_pull(cold, scratch, cert_dir=trust, https_proxy=appliance.url)
            settle()
            times = interleave(
                {
                    "appliance": functools.partial(through_appliance, purge, cold),
                    "restarted": functools.partial(through_appliance, restart_empty, cold),
                    "floor": functools.partial(
                        floor_pull,
                        image,
                        upstream,
                        scratch,
                        cert_dir=trust,
                        https_proxy=appliance.url,
                        fill_seconds=fills,
                    ),
                    "distribution": functools.partial(
                        through_distribution, image.reference(distribution.host_port)
                    ),
                    "direct": functools.partial(
                        timed_pull, image.reference(upstream.host_port), scratch, cert_dir=lab.pki.cert_dir
                    ),
                },
                ctx.profile.cold_runs,
            )
            med = {peer: median(values) for peer, values in times.items()}
            ctx.log(f"  cold {kind}: " + ", ".join(f"{p} {t:.3f}s" for p, t in med.items()))
            detail = {
                "image_bytes": image.total_size,
                "seconds": times,
                "median": med,
                "floor_fill_seconds": fills,
            }
            metrics.append(
                Metric(
                    NAME,
                    f"{kind}: appliance cold / direct",
                    med["appliance"] / med["direct"],
                    "x",
                    Target("<=", 1.10, "<= 1.10x"),
                    detail,
                )
            )
            reported = {
                "floor (warm pull + bare fill alongside) / direct": med["floor"] / med["direct"],
                "appliance cold / floor (its own overhead)": med["appliance"] / med["floor"],
                "distribution cache cold / direct": med["distribution"] / med["direct"],
                "first pull after a restart / direct": med["restarted"] / med["direct"],
            }
            metrics.extend(Metric(NAME, f"{kind}: {name}", value, "x") for name, value in reported.items())
    finally:
        distribution.stop()
        appliance.stop()
    return metrics
