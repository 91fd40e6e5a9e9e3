"""4. Thundering herd, and 5. the appliance's peak RSS during it.

N skopeo clients pull the same uncached image through the appliance at once.  The upstream's own
access log says how many blob bytes it sent (must be exactly one image), and the slowest client is
compared with one client pulling the same image alone from an empty cache.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from bench.harness import Context, Metric, Target, peak_rss_mb
from bench.peers import appliance_for, restart_empty
from bench.pulls import timed_pull

NAME = "herd"


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    image = lab.image("herd", ctx.profile.herd_layers)
    clients = ctx.profile.herd_clients
    appliance = appliance_for(scratch / "appliance", lab.pki, upstream)
    appliance.start()
    try:
        trust = appliance.cert_dir()
        ref = image.reference(upstream.name_port)
        single = timed_pull(ref, scratch, cert_dir=trust, https_proxy=appliance.url)
        restart_empty(appliance)
        upstream.clear_requests()
        barrier = threading.Barrier(clients)

        def one(_: int) -> float:
            barrier.wait(timeout=60)
            return timed_pull(ref, scratch, cert_dir=trust, https_proxy=appliance.url, timeout=900)

        with ThreadPoolExecutor(clients) as pool:
            durations = list(pool.map(one, range(clients)))
        rss = peak_rss_mb(appliance.process.pid) if appliance.process else float("nan")
    finally:
        appliance.stop()
    served = [r for r in upstream.blob_requests(image.repository) if r.status == 200]
    fetched = sum(r.size for r in served)
    ratio = fetched / image.total_size
    slowest = max(durations)
    ctx.log(
        f"  herd: {clients} clients, upstream sent {fetched} of {image.total_size} bytes,"
        f" slowest {slowest:.2f}s vs single {single:.2f}s"
    )
    return [
        Metric(
            NAME,
            f"upstream bytes / image size ({clients} clients)",
            ratio,
            "x",
            Target("==", 1.0, "== 1.00x"),
            {"fetched": fetched, "image_bytes": image.total_size, "blob_gets": len(served)},
        ),
        Metric(
            NAME,
            "slowest client / single client",
            slowest / single,
            "x",
            None,
            {"single_s": single, "durations_s": sorted(durations), "clients": clients},
        ),
        Metric(
            "memory",
            f"peak RSS during herd (4, {clients} clients)",
            rss,
            "MB",
            Target("<=", 150, "<= 150 MB"),
        ),
    ]
