"""7. Event firehose: requests/s through the proxy with 0 and with 3 event subscribers attached.

The load is small cache hits (a manifest by digest) over MITM TLS from an aiohttp client with a few
keep-alive connections; every request publishes one event.  Subscribers are separate processes
(``bench.subscriber``) reading the control socket's WebSocket stream, so they cost the appliance
what a real dashboard would.  Rounds alternate 0 and 3 subscribers; medians are compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from bench.harness import ROOT, Context, Metric, Target, median, rotations
from bench.peers import appliance_ca, appliance_for
from tests.fixtures.process import FixtureError, clean_env

NAME = "firehose"
SUBSCRIBERS = 3
# Distribution answers 404 for an OCI manifest unless the client says it accepts one.
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


async def _load(url: str, proxy: str, cafile: Path, seconds: float, concurrency: int) -> int:
    context = ssl.create_default_context(cafile=str(cafile))
    done = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.get(url, proxy=proxy, headers=ACCEPT) as answer:
                    await answer.read()
                    if answer.status != 200:
                        raise FixtureError(f"firehose request answered {answer.status}")
                done += 1

        # Warm the connections (CONNECT + TLS) before the clock that counts.
        await asyncio.gather(*(worker_once(session, url, proxy) for _ in range(concurrency)))
        deadline = time.monotonic() + seconds
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return int(done / elapsed)


async def worker_once(session: aiohttp.ClientSession, url: str, proxy: str) -> None:
    async with session.get(url, proxy=proxy, headers=ACCEPT) as answer:
        await answer.read()


def _start_subscribers(socket: Path) -> list[subprocess.Popen[str]]:
    procs = []
    for _ in range(SUBSCRIBERS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.subscriber", str(socket)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            _stop_subscribers(procs)
            raise FixtureError(
                f"subscriber did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
            )
    return procs


def _stop_subscribers(procs: list[subprocess.Popen[str]]) -> list[int]:
    counts = []
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        with contextlib.suppress(ValueError):
            counts.append(int(out.strip().splitlines()[-1]))
    return counts


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    image = lab.image("small", ctx.profile.small_layers)
    appliance = appliance_for(scratch / "appliance", lab.pki, upstream)
    appliance.start()
    rates: dict[str, list[int]] = {"0 subscribers": [], f"{SUBSCRIBERS} subscribers": []}
    delivered: list[int] = []
    try:
        ca = appliance_ca(appliance)
        url = f"https://{upstream.name_port}/v2/{image.repository}/manifests/{image.manifest_digest}"
        p = ctx.profile

        def load() -> int:
            return asyncio.run(_load(url, appliance.url, ca, p.firehose_seconds, p.firehose_concurrency))

        asyncio.run(_load(url, appliance.url, ca, 0.2, 1))  # the fill, and a warm-up
        for order in rotations(list(rates), p.firehose_rounds):
            for mode in order:
                if mode.startswith("0"):
                    rates[mode].append(load())
                    continue
                procs = _start_subscribers(appliance.control_socket)
                try:
                    rates[mode].append(load())
                    time.sleep(0.2)  # let the last batches reach the subscribers
                finally:
                    delivered.extend(_stop_subscribers(procs))
    finally:
        appliance.stop()
    med = {mode: median(values) for mode, values in rates.items()}
    ctx.log("  firehose req/s: " + ", ".join(f"{m} {r:.0f}" for m, r in med.items()))
    if not delivered or min(delivered) == 0:
        raise FixtureError(f"subscribers received no events: {delivered}")
    with_subs = med[f"{SUBSCRIBERS} subscribers"]
    return [
        Metric(
            NAME,
            f"req/s with {SUBSCRIBERS} subscribers / with 0",
            with_subs / med["0 subscribers"],
            "x",
            Target(">=", 0.95, ">= 0.95x"),
            {"req_per_s": rates, "median": med, "events_per_subscriber": delivered},
        ),
        Metric(NAME, "req/s through MITM, 0 subscribers", med["0 subscribers"], "req/s"),
    ]
