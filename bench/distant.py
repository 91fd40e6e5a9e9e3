"""8. A distant registry: the 12-layer pull when the upstream is a round trip of tens of ms away.

Not one of the issue's targets; it measures what loopback hides.  Registries users pull from are
20-100 ms away, and skopeo fetches the layers of a ``dir:`` copy one after the other, so a direct
pull pays the distance once or more per request.  A ``DelayedForwarder`` in front of the upstream
adds ``profile.distant_delay`` each way; then, in rotating order: a direct pull through it, a
cold pull through the appliance with pull-ahead on (the default) and with it off, and a warm one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from bench.cold_pull import purge
from bench.harness import Context, Metric, interleave, median
from bench.latency import DelayedForwarder
from bench.pulls import timed_pull
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.pki import REGISTRY_HOST

NAME = "distant"


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    image = lab.image("small", ctx.profile.small_layers)
    delay = ctx.profile.distant_delay
    rtt_ms = round(2 * delay * 1000)
    with DelayedForwarder(("127.0.0.1", upstream.port), delay) as far:
        far_name = f"{REGISTRY_HOST}:{far.port}"
        spec = UpstreamSpec(far_name, f"127.0.0.1:{far.port}")
        appliances = {
            "pull-ahead": Appliance(scratch / "pull-ahead", [spec], upstream_ca=lab.pki.ca_file),
            "no pull-ahead": Appliance(
                scratch / "no-pull-ahead",
                [spec],
                upstream_ca=lab.pki.ca_file,
                env={"APPLIANCE_PULL_AHEAD": "0"},
            ),
        }
        for appliance in appliances.values():
            appliance.start()
        try:
            trust = {name: appliance.cert_dir() for name, appliance in appliances.items()}

            def through(name: str, cold: bool) -> float:
                appliance = appliances[name]
                if cold:
                    purge(appliance)
                return timed_pull(
                    image.reference(far_name), scratch, cert_dir=trust[name], https_proxy=appliance.url
                )

            pulls: dict[str, Callable[[], float]] = {
                "direct": functools.partial(
                    timed_pull, image.reference(f"127.0.0.1:{far.port}"), scratch, cert_dir=lab.pki.cert_dir
                ),
                "cold": functools.partial(through, "pull-ahead", True),
                "cold, no pull-ahead": functools.partial(through, "no pull-ahead", True),
                "warm": functools.partial(through, "pull-ahead", False),
            }
            through("pull-ahead", False)  # "warm" finds the image whichever peer runs first
            times = interleave(pulls, ctx.profile.distant_runs)
        finally:
            for appliance in appliances.values():
                appliance.stop()
    med = {peer: median(values) for peer, values in times.items()}
    ctx.log(f"  {rtt_ms} ms away, 12 layers: " + ", ".join(f"{p} {t:.3f}s" for p, t in med.items()))
    detail = {"rtt_ms": rtt_ms, "image_bytes": image.total_size, "seconds": times, "median": med}
    where = f"registry {rtt_ms} ms away, 12 layers"
    return [
        Metric(NAME, f"{where}: appliance cold / direct", med["cold"] / med["direct"], "x", None, detail),
        Metric(
            NAME,
            f"{where}: cold without pull-ahead / direct",
            med["cold, no pull-ahead"] / med["direct"],
            "x",
        ),
        Metric(NAME, f"{where}: appliance warm / direct", med["warm"] / med["direct"], "x"),
    ]
