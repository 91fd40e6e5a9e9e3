"""``make soak``: many clients for minutes, slow clients alongside; does the appliance stay bounded?

Loopback only, bounded in time and count, stops by itself.  Everything runs from this process:

* the upstream (CNCF distribution over TLS) with one image, and the appliance for it (a real
  ``appliance run`` subprocess), both from the benchmark harness (``bench.peers``);
* ``SOAK_CLIENTS`` concurrent clients for ``SOAK_SECONDS``, half through the appliance as an HTTPS
  proxy (CONNECT + MITM TLS), half in mirror mode (``/v2/...?ns=``), each fetching the image's blobs
  (cache hits after a warm-up) and checking every status and length;
* ``SOAK_SLOW`` slowloris clients at the same time, from other loopback source addresses (so the
  per-source cap does not hide them), half trickling a request head on the plain port, half inside
  a MITM tunnel; each one that is cut reconnects, and the time it was held is recorded;
* the same hits served by distribution in pull-through-cache mode, measured in the same run, for
  the CPU-seconds per GiB comparison.

Reported: requests, errors, p50/p99 latency, the appliance's RSS and open fds before / peak during /
after, the slow clients' hold times against the head deadline, CPU-seconds per GiB served (appliance
and distribution).  Pass: zero errors, peak RSS <= 150 MB, fds back to the baseline, every slow
client cut at its deadline (within 2 s).  Results: ``bench/results/soak-latest.json``.

Settings (environment): ``SOAK_SECONDS`` (300), ``SOAK_CLIENTS`` (200), ``SOAK_SLOW`` (200),
``SOAK_HEAD_TIMEOUT`` (10 s: the appliance's head deadline in this run, short so slow clients are
cut many times), ``SOAK_DIST_SECONDS`` (the distribution phase, default min(60, SOAK_SECONDS)).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from bench.harness import RESULTS, MiB, machine, make_workdir
from bench.peers import DistributionCache, Lab, appliance_ca, settle
from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.images import ImageInfo

RSS_LIMIT_MB = 150.0
CUT_TOLERANCE = 2.0  # seconds past the head deadline a slow client may still be connected
LAYERS = (256 * 1024, 512 * 1024, 1 * MiB, 2 * MiB)
TRICKLE = 1.0  # seconds between a slow client's header lines
SLOW_SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: float
    clients: int
    slow: int
    head_timeout: float
    dist_seconds: float

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> Settings:
        def number(name: str, default: float, low: float) -> float:
            text = environ.get(name, "")
            try:
                value = float(text) if text else default
            except ValueError:
                raise SystemExit(f"{name}={text!r}: expected a number") from None
            if value < low:
                raise SystemExit(f"{name}={text!r}: must be at least {low:g}")
            return value

        seconds = number("SOAK_SECONDS", 300, 1)
        return cls(
            seconds=seconds,
            clients=int(number("SOAK_CLIENTS", 200, 2)),
            slow=int(number("SOAK_SLOW", 200, 0)),
            head_timeout=number("SOAK_HEAD_TIMEOUT", 10, 1),
            dist_seconds=number("SOAK_DIST_SECONDS", min(60.0, seconds), 1),
        )


@dataclass
class Load:
    """What one phase of clients saw."""

    requests: int = 0
    bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Slow:
    """The slow clients: how long each connection was held before the appliance cut it."""

    held: list[float] = field(default_factory=list)
    not_cut: int = 0  # still connected when the soak ended (the last connection of each client)
    refused: int = 0  # answered 503 at accept (a limit), or failed to connect


@dataclass(frozen=True, slots=True)
class Sample:
    rss_mb: float
    fds: int
    cpu_s: float


def sample(pid: int) -> Sample:
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024 / 1e6
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields_[11]) + int(fields_[12])) / ticks  # utime + stime
    return Sample(rss, len(os.listdir(f"/proc/{pid}/fd")), cpu)


# -- the clients ----------------------------------------------------------------------------------


Target = tuple[str, int, str | None]  # (url, expected length, proxy)


async def run_clients(
    targets: Sequence[Target], clients: int, seconds: float, context: ssl.SSLContext
) -> Load:
    """``clients`` workers fetching ``targets`` in turn until ``seconds`` are up.

    One session per kind of target (proxied or not): aiohttp's ``limit`` bounds the connections in
    use, not the idle ones kept per target kind, so one shared session would hold up to twice
    ``clients`` connections.
    """
    load = Load()
    deadline = time.monotonic() + seconds
    kinds = sorted({proxy or "" for _, _, proxy in targets})
    timeout = aiohttp.ClientTimeout(total=60)
    sessions = {
        kind: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(1, clients // len(kinds)), ssl=context),
            trust_env=False,
            timeout=timeout,
        )
        for kind in kinds
    }
    try:

        async def worker(index: int) -> None:
            kind = kinds[index % len(kinds)]
            mine = [t for t in targets if (t[2] or "") == kind]
            session = sessions[kind]
            turn = index
            while time.monotonic() < deadline:
                url, length, proxy = mine[turn % len(mine)]
                turn += 1
                started = time.monotonic()
                try:
                    async with session.get(url, proxy=proxy) as answer:
                        body = await answer.read()
                    if answer.status != 200:
                        load.error(f"HTTP {answer.status}")
                    elif len(body) != length:
                        load.error("wrong length")
                    else:
                        load.requests += 1
                        load.bytes += len(body)
                        load.latencies.append(time.monotonic() - started)
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    load.error(type(exc).__name__)

        await asyncio.gather(*(worker(i) for i in range(clients)))
    finally:
        for session in sessions.values():
            await session.close()
    return load


async def slowloris(
    kind: str, source: str, port: int, name: str, context: ssl.SSLContext, stop_at: float, slow: Slow
) -> None:
    """Trickle a request head that never ends; reconnect each time the appliance cuts it."""
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            slow.refused += 1
            await asyncio.sleep(TRICKLE)
            continue
        try:
            if kind == "tls":
                writer.write(f"CONNECT {name} HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
                status = await reader.readuntil(b"\r\n\r\n")
                if not status.startswith(b"HTTP/1.1 200"):
                    slow.refused += 1
                    await asyncio.sleep(TRICKLE)
                    continue
                await writer.start_tls(context, server_hostname=name.rsplit(":", 1)[0])
            started = time.monotonic()  # the head deadline starts now (again, inside a tunnel)
            writer.write(b"GET /v2/ HTTP/1.1\r\nHost: " + name.encode() + b"\r\n")
            while True:
                left = stop_at - time.monotonic()
                if left <= 0:
                    slow.not_cut += 1
                    return
                try:
                    data = await asyncio.wait_for(reader.read(4096), min(TRICKLE, left))
                except TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")
                    continue
                if data.startswith(b"HTTP/1.1 503"):
                    slow.refused += 1
                    await asyncio.sleep(TRICKLE)
                    break
                if not data:
                    slow.held.append(time.monotonic() - started)
                    break
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ConnectionError):
            slow.held.append(time.monotonic() - started if "started" in locals() else 0.0)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, ConnectionError, TimeoutError):
                async with asyncio.timeout(2):
                    await writer.wait_closed()


async def watch(pid: int, stop: asyncio.Event, into: list[Sample]) -> None:
    while not stop.is_set():
        into.append(sample(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def appliance_phase(
    settings: Settings, appliance: Appliance, name: str, targets: Sequence[Target], context: ssl.SSLContext
) -> tuple[Load, Slow, list[Sample]]:
    assert appliance.process is not None
    pid = appliance.process.pid
    stop = asyncio.Event()
    samples: list[Sample] = []
    watcher = asyncio.create_task(watch(pid, stop, samples))
    slow = Slow()
    stop_at = time.monotonic() + settings.seconds
    slowpokes = [
        slowloris(
            "tls" if i % 2 else "plain",
            SLOW_SOURCES[i % len(SLOW_SOURCES)],
            appliance.port,
            name,
            context,
            stop_at,
            slow,
        )
        for i in range(settings.slow)
    ]
    results = await asyncio.gather(
        run_clients(targets, settings.clients, settings.seconds, context), *slowpokes
    )
    stop.set()
    await watcher
    load = results[0]
    assert isinstance(load, Load)
    return load, slow, samples


def settle_fds(pid: int, baseline: int, limit: float) -> Sample:
    """The appliance's sample once its fds are back to ``baseline``, or after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        now = sample(pid)
        if now.fds <= baseline or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


# -- the run --------------------------------------------------------------------------------------


def targets_for(
    image: ImageInfo, sizes: dict[str, int], base: str, proxy: str | None, query: str
) -> list[Target]:
    return [(f"{base}/v2/{image.repository}/blobs/{d}{query}", sizes[d], proxy) for d in image.blob_digests]


def blob_sizes(lab: Lab, image: ImageInfo) -> dict[str, int]:
    import urllib.request

    context = ssl.create_default_context(cafile=str(lab.pki.ca_file))
    sizes = {}
    for digest in image.blob_digests:
        url = f"{lab.upstream.url}/v2/{image.repository}/blobs/{digest}"
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            sizes[digest] = int(answer.headers["Content-Length"])
    return sizes


def run(settings: Settings, log: Callable[[str], None] = print) -> dict[str, object]:
    workdir = make_workdir(keep=False)
    lab = Lab(workdir / "lab")
    report: dict[str, object] = {"settings": asdict(settings)}
    try:
        image = lab.image("soak", LAYERS)
        sizes = blob_sizes(lab, image)
        upstream = lab.upstream
        appliance = Appliance(
            workdir / "appliance",
            [UpstreamSpec(upstream.name_port, upstream.host_port)],
            upstream_ca=lab.pki.ca_file,
            extra_toml={"timeouts": {"client_header": f"{round(settings.head_timeout * 1000)}ms"}},
        )
        appliance.start()
        try:
            report["appliance"] = asyncio.run(
                _appliance(settings, appliance, upstream.name_port, image, sizes, log)
            )
        finally:
            appliance.stop()
        cache = DistributionCache(workdir / "distribution", lab.pki, upstream)
        cache.start()
        try:
            report["distribution"] = asyncio.run(_distribution(settings, cache, lab, image, sizes, log))
        finally:
            cache.stop()
    finally:
        lab.close()
    return report


async def _appliance(
    settings: Settings,
    appliance: Appliance,
    name: str,
    image: ImageInfo,
    sizes: dict[str, int],
    log: Callable[[str], None],
) -> dict[str, object]:
    assert appliance.process is not None
    pid = appliance.process.pid
    context = ssl.create_default_context(cafile=str(appliance_ca(appliance)))
    mitm = targets_for(image, sizes, f"https://{name}", appliance.url, "")
    mirror = targets_for(image, sizes, f"http://127.0.0.1:{appliance.port}", None, f"?ns={name}")
    targets = [t for pair in zip(mitm, mirror, strict=True) for t in pair]
    warm = await run_clients(targets, 4, 1.0, context)  # fills the cache, opens the upstream pool
    if warm.errors:
        raise SystemExit(f"the warm-up failed: {warm.errors}")
    settle()
    before = sample(pid)
    log(f"soak: {settings.clients} clients + {settings.slow} slow for {settings.seconds:g}s, appliance")
    load, slow, during = await appliance_phase(settings, appliance, name, targets, context)
    after = await asyncio.to_thread(settle_fds, pid, before.fds, settings.head_timeout + 15)
    cpu = max(s.cpu_s for s in [*during, after]) - before.cpu_s
    gib = load.bytes / (1024**3)
    held = sorted(slow.held)
    late = [h for h in held if h > settings.head_timeout + CUT_TOLERANCE]
    early = [h for h in held if h < settings.head_timeout - 0.5]
    peak_rss = max([s.rss_mb for s in during] + [after.rss_mb])
    peak_fds = max([s.fds for s in during] + [after.fds])
    result: dict[str, object] = {
        "requests": load.requests,
        "errors": load.errors,
        "p50_ms": round(load.percentile(0.5) * 1000, 1),
        "p99_ms": round(load.percentile(0.99) * 1000, 1),
        "gib_served": round(gib, 3),
        "cpu_s_per_gib": round(cpu / gib, 2) if gib else None,
        "rss_mb": {
            "before": round(before.rss_mb, 1),
            "peak": round(peak_rss, 1),
            "after": round(after.rss_mb, 1),
        },
        "fds": {"before": before.fds, "peak": peak_fds, "after": after.fds},
        "slow": {
            "cut": len(held),
            "held_s": {
                "min": round(held[0], 2),
                "median": round(held[len(held) // 2], 2),
                "max": round(held[-1], 2),
            }
            if held
            else None,
            "cut_late": len(late),
            "cut_early": len(early),
            "still_open_at_end": slow.not_cut,
            "refused": slow.refused,
        },
    }
    checks = {
        "zero errors": not load.errors,
        f"peak RSS <= {RSS_LIMIT_MB:g} MB": peak_rss <= RSS_LIMIT_MB,
        "fds back to baseline": after.fds <= before.fds,
        "slow clients cut at their deadline": (not late and not early and bool(held)) or settings.slow == 0,
    }
    result["checks"] = checks
    return result


async def _distribution(
    settings: Settings,
    cache: DistributionCache,
    lab: Lab,
    image: ImageInfo,
    sizes: dict[str, int],
    log: Callable[[str], None],
) -> dict[str, object]:
    assert cache._proc is not None  # the fixture keeps its process private
    pid = cache._proc.pid
    context = ssl.create_default_context(cafile=str(lab.pki.ca_file))
    targets = targets_for(image, sizes, f"https://{cache.host_port}", None, "")
    # One client at first: distribution's cache answers 500 now and then to concurrent first
    # fetches of one blob; a second pass must then be clean.
    await run_clients(targets, 1, 2.0, context)
    warm = await run_clients(targets, 1, 1.0, context)
    if warm.errors:
        raise SystemExit(f"the distribution warm-up failed: {warm.errors}")
    log(f"soak: the same hits from distribution, {settings.clients} clients for {settings.dist_seconds:g}s")
    before = sample(pid)
    load = await run_clients(targets, settings.clients, settings.dist_seconds, context)
    after = sample(pid)
    gib = load.bytes / (1024**3)
    return {
        "requests": load.requests,
        "errors": load.errors,
        "p50_ms": round(load.percentile(0.5) * 1000, 1),
        "p99_ms": round(load.percentile(0.99) * 1000, 1),
        "gib_served": round(gib, 3),
        "cpu_s_per_gib": round((after.cpu_s - before.cpu_s) / gib, 2) if gib else None,
        "rss_mb": round(after.rss_mb, 1),
    }


def main() -> int:
    settings = Settings.from_env()
    report = run(settings)
    report["machine"] = machine()
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    appliance = report["appliance"]
    assert isinstance(appliance, dict)
    checks: dict[str, bool] = appliance["checks"]
    for check, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
