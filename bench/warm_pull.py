"""1. Warm pull: skopeo through the appliance (MITM) vs distribution's pull-through cache vs direct.

Both caches are primed by one pull first; then every run pulls through each peer, in rotating
order, and the medians are compared.  Two images: one big layer, and many small layers.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.harness import Context, Metric, Target, interleave, median
from bench.peers import DistributionCache, appliance_for, settle
from bench.pulls import timed_pull

NAME = "warm_pull"


def images(ctx: Context) -> dict[str, tuple[int, ...]]:
    return {"big": (ctx.profile.big_layer,), "small": ctx.profile.small_layers}


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    appliance = appliance_for(scratch / "appliance", lab.pki, upstream)
    cache = DistributionCache(scratch / "distribution", lab.pki, upstream)
    metrics: list[Metric] = []
    appliance.start()
    cache.start()
    try:
        trust = appliance.cert_dir()
        for kind, layers in images(ctx).items():
            image = lab.image(kind, layers)
            pulls: dict[str, Callable[[], float]] = {
                "appliance": lambda image=image: timed_pull(
                    image.reference(upstream.name_port), scratch, cert_dir=trust, https_proxy=appliance.url
                ),
                "distribution": lambda image=image: timed_pull(
                    image.reference(cache.host_port), scratch, cert_dir=lab.pki.cert_dir
                ),
                "direct": lambda image=image: timed_pull(
                    image.reference(upstream.host_port), scratch, cert_dir=lab.pki.cert_dir
                ),
            }
            pulls["appliance"]()
            pulls["distribution"]()
            settle()
            times = interleave(pulls, ctx.profile.runs)
            med = {peer: median(values) for peer, values in times.items()}
            ctx.log(f"  warm {kind}: " + ", ".join(f"{p} {t:.3f}s" for p, t in med.items()))
            detail = {"image_bytes": image.total_size, "layers": len(layers), "seconds": times, "median": med}
            metrics.append(
                Metric(
                    NAME,
                    f"{kind}: appliance / distribution cache",
                    med["appliance"] / med["distribution"],
                    "x",
                    Target("<=", 1.0, "<= 1.00x"),
                    detail,
                )
            )
            metrics.append(
                Metric(
                    NAME,
                    f"{kind}: appliance / direct",
                    med["appliance"] / med["direct"],
                    "x",
                    Target("<=", 1.05, "<= 1.05x"),
                    {"median": med},
                )
            )
    finally:
        cache.stop()
        appliance.stop()
    return metrics
