"""2. Cold pull overhead: the appliance with an empty cache vs a direct pull, same image.

Before each appliance run it is restarted with its cache wiped (not timed; the CA is kept).
"""

from __future__ import annotations

from bench.harness import Context, Metric, Target, median, rotations
from bench.peers import appliance_for, restart_empty
from bench.pulls import timed_pull
from bench.warm_pull import images

NAME = "cold_pull"


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    appliance = appliance_for(scratch / "appliance", lab.pki, upstream)
    metrics: list[Metric] = []
    appliance.start()
    try:
        trust = appliance.cert_dir()
        for kind, layers in images(ctx).items():
            image = lab.image(kind, layers)
            times: dict[str, list[float]] = {"appliance": [], "direct": []}
            for order in rotations(list(times), ctx.profile.cold_runs):
                for peer in order:
                    if peer == "appliance":
                        restart_empty(appliance)
                        seconds = timed_pull(
                            image.reference(upstream.name_port),
                            scratch,
                            cert_dir=trust,
                            https_proxy=appliance.url,
                        )
                    else:
                        seconds = timed_pull(
                            image.reference(upstream.host_port), scratch, cert_dir=lab.pki.cert_dir
                        )
                    times[peer].append(seconds)
            med = {peer: median(values) for peer, values in times.items()}
            ctx.log(f"  cold {kind}: " + ", ".join(f"{p} {t:.3f}s" for p, t in med.items()))
            metrics.append(
                Metric(
                    NAME,
                    f"{kind}: appliance cold / direct",
                    med["appliance"] / med["direct"],
                    "x",
                    Target("<=", 1.10, "<= 1.10x"),
                    {"image_bytes": image.total_size, "seconds": times, "median": med},
                )
            )
    finally:
        appliance.stop()
    return metrics
