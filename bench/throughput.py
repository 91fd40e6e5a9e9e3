"""3. Hit throughput with curl, and 5. the appliance's peak RSS while serving it.

One random blob, uploaded to the upstream and also served by nginx from a file.  After one priming
fetch through the appliance (the fill), each peer is fetched in rotating order:

* appliance over MITM TLS (``curl --proxy``) vs nginx over TLS, and vs distribution serving the blob;
* appliance mirror mode (plain HTTP ``/v2/...?ns=``) vs nginx plain HTTP with ``sendfile``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.harness import Context, Metric, Target, median, peak_rss_mb, rotations
from bench.peers import Nginx, appliance_ca, appliance_for, curl_fetch, random_file, upload_blob
from tests.fixtures.process import FixtureError

NAME = "hit_throughput"
REPOSITORY = "bench/hit"


CONCURRENT_CLIENTS = 10


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    www = scratch / "www"
    www.mkdir(exist_ok=True)
    size = ctx.profile.hit_blob
    digest = random_file(www / "blob", size)
    upload_blob(upstream, REPOSITORY, www / "blob", digest)
    nginx = Nginx(scratch / "nginx", www, lab.pki)
    appliance = appliance_for(scratch / "appliance", lab.pki, upstream)
    nginx.start()
    appliance.start()
    try:
        ca = appliance_ca(appliance)
        blob_path = f"/v2/{REPOSITORY}/blobs/{digest}"
        mitm_url = f"https://{upstream.name_port}{blob_path}"
        fetches: dict[str, Callable[[], tuple[int, float]]] = {
            "appliance_tls": lambda: curl_fetch(mitm_url, proxy=appliance.url, cacert=ca),
            "nginx_tls": lambda: curl_fetch(
                f"https://127.0.0.1:{nginx.tls_port}/blob", cacert=lab.pki.ca_file
            ),
            "distribution_tls": lambda: curl_fetch(f"{upstream.url}{blob_path}", cacert=lab.pki.ca_file),
            "appliance_plain": lambda: curl_fetch(f"{appliance.url}{blob_path}?ns={upstream.name_port}"),
            "nginx_sendfile": lambda: curl_fetch(f"http://127.0.0.1:{nginx.plain_port}/blob"),
        }
        fill_bytes, fill_seconds = fetches["appliance_tls"]()
        if fill_bytes != size:
            raise FixtureError(f"priming fetch got {fill_bytes} of {size} bytes")
        rates: dict[str, list[float]] = {peer: [] for peer in fetches}
        for order in rotations(list(fetches), ctx.profile.hit_runs):
            for peer in order:
                got, seconds = fetches[peer]()
                if got != size:
                    raise FixtureError(f"{peer} served {got} of {size} bytes")
                rates[peer].append(size / seconds / 1e6)
        rss = peak_rss_mb(appliance.process.pid) if appliance.process else float("nan")
        # Issue 4's memory bound: the same blob to 10 clients at once over MITM TLS.
        with ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
            sizes = list(pool.map(lambda _n: fetches["appliance_tls"]()[0], range(CONCURRENT_CLIENTS)))
        if any(got != size for got in sizes):
            raise FixtureError(f"a concurrent client got {sizes} of {size} bytes")
        rss_concurrent = peak_rss_mb(appliance.process.pid) if appliance.process else float("nan")
    finally:
        appliance.stop()
        nginx.stop()
    med = {peer: median(values) for peer, values in rates.items()}
    ctx.log("  hit MB/s: " + ", ".join(f"{p} {r:.0f}" for p, r in med.items()))
    detail = {"blob_bytes": size, "MB_per_s": rates, "median_MB_per_s": med, "fill_seconds": fill_seconds}
    return [
        Metric(
            NAME,
            "MITM TLS / nginx TLS",
            med["appliance_tls"] / med["nginx_tls"],
            "x",
            Target(">=", 0.60, ">= 0.60x"),
            detail,
        ),
        Metric(
            NAME,
            "MITM TLS / distribution TLS",
            med["appliance_tls"] / med["distribution_tls"],
            "x",
            Target(">=", 1.2, ">= 1.20x"),
        ),
        Metric(
            NAME,
            "mirror plain / nginx sendfile",
            med["appliance_plain"] / med["nginx_sendfile"],
            "x",
            Target(">=", 0.85, ">= 0.85x"),
        ),
        Metric(NAME, "MITM TLS hit rate", med["appliance_tls"], "MB/s"),
        Metric(NAME, "mirror plain hit rate", med["appliance_plain"], "MB/s"),
        Metric("memory", "peak RSS during hits (3)", rss, "MB", Target("<=", 150, "<= 150 MB")),
        Metric(
            "memory",
            f"peak RSS, one blob to {CONCURRENT_CLIENTS} clients at once",
            rss_concurrent,
            "MB",
            Target("<=", 150, "<= 150 MB"),
            {"blob_bytes": size},
        ),
    ]
