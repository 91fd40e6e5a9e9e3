"""The shared harness: size profiles, results with their targets, the one table, the JSON file.

Every benchmark module exposes ``run(ctx: Context) -> list[Metric]``.  A metric is usually a ratio
measured in the same run (absolute times on a shared 2-core machine are noise); its raw numbers ride
along in ``detail`` so the JSON keeps everything the table summarises.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class Profile:
    """How big and how many: ``full`` is the issue's definition, the others are for smoke runs."""

    name: str
    runs: int  # warm pulls per peer (median taken)
    cold_runs: int
    big_layer: int  # the single-layer image
    small_layers: tuple[int, ...]  # the many-small-layers image
    hit_blob: int  # the blob fetched with curl
    hit_runs: int
    herd_clients: int
    herd_layers: tuple[int, ...]
    index_entries: int
    firehose_seconds: float
    firehose_rounds: int
    firehose_concurrency: int
    distant_delay: float  # seconds each way between the appliance (or a client) and the upstream
    distant_runs: int


FULL = Profile(
    name="full",
    # Pulls vary from run to run by more than the 5 % the targets are about (two cores shared by the
    # client, the peers and the upstream): 9 interleaved runs each (5 left the 256 MiB warm pull's
    # median 3-7 % apart between full runs of the same code).
    runs=9,
    cold_runs=9,
    big_layer=256 * MiB,
    small_layers=(1 * MiB,) * 12,
    hit_blob=1 * GiB,
    hit_runs=3,
    herd_clients=50,
    herd_layers=(16 * MiB, 8 * MiB, 4 * MiB, 1 * MiB),
    index_entries=100_000,
    firehose_seconds=3.0,
    firehose_rounds=7,
    firehose_concurrency=8,
    distant_delay=0.010,
    distant_runs=5,
)
QUICK = Profile(
    name="quick",
    runs=3,
    cold_runs=2,
    big_layer=16 * MiB,
    small_layers=(64 * 1024,) * 12,
    hit_blob=64 * MiB,
    hit_runs=2,
    herd_clients=10,
    herd_layers=(2 * MiB, 256 * 1024),
    index_entries=10_000,
    firehose_seconds=1.5,
    firehose_rounds=2,
    firehose_concurrency=8,
    distant_delay=0.010,
    distant_runs=2,
)
SMOKE = Profile(
    name="smoke",
    runs=1,
    cold_runs=1,
    big_layer=256 * 1024,
    small_layers=(4096,) * 12,
    hit_blob=4 * MiB,
    hit_runs=1,
    herd_clients=4,
    herd_layers=(64 * 1024, 4096),
    index_entries=1000,
    firehose_seconds=0.5,
    firehose_rounds=1,
    firehose_concurrency=4,
    distant_delay=0.002,
    distant_runs=1,
)
PROFILES = {p.name: p for p in (FULL, QUICK, SMOKE)}


@dataclass(frozen=True, slots=True)
class Target:
    """``value OP limit``; ``text`` is how the issue states it."""

    op: str  # "<=", ">=", "=="
    limit: float
    text: str

    def met(self, value: float) -> bool:
        if self.op == "<=":
            return value <= self.limit
        if self.op == ">=":
            return value >= self.limit
        return abs(value - self.limit) < 1e-9


@dataclass(frozen=True, slots=True)
class Metric:
    """One row of the table."""

    bench: str
    name: str
    value: float
    unit: str
    target: Target | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["met"] = self.met
        return data


@dataclass
class Context:
    """What every benchmark gets: its profile and a scratch directory removed at the end."""

    profile: Profile
    workdir: Path
    log: Callable[[str], None] = print
    _lab: Any = None

    def lab(self) -> Any:
        """The shared upstream and its images (``bench.peers.Lab``), started on first use."""
        if self._lab is None:
            from bench.peers import Lab

            self._lab = Lab(self.scratch("lab"))
        return self._lab

    def close(self) -> None:
        if self._lab is not None:
            self._lab.close()
            self._lab = None

    def scratch(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rotations(peers: Sequence[str], runs: int) -> list[list[str]]:
    """Interleaved run order: every run visits each peer, starting one further each time."""
    return [[peers[(i + j) % len(peers)] for j in range(len(peers))] for i in range(runs)]


def interleave(peers: Mapping[str, Callable[[], float]], runs: int) -> dict[str, list[float]]:
    """Each peer's measurements over ``runs`` interleaved rounds (see ``rotations``)."""
    times: dict[str, list[float]] = {peer: [] for peer in peers}
    for order in rotations(list(peers), runs):
        for peer in order:
            times[peer].append(peers[peer]())
    return times


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.started


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    cpu = platform.processor() or platform.machine()
    mem_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def peak_rss_mb(pid: int) -> float:
    """VmHWM (the kernel's own high-water mark of resident memory) of ``pid``, in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmHWM for pid {pid}")


def format_table(metrics: Sequence[Metric]) -> str:
    header = ("bench", "metric", "value", "target", "met")
    rows = [header]
    for m in metrics:
        value = f"{m.value:.3f}{m.unit}" if m.unit == "x" else f"{m.value:.3g} {m.unit}"
        met = "-" if m.met is None else ("yes" if m.met else "NO")
        rows.append((m.bench, m.name, value, m.target.text if m.target else "", met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, profile: Profile, metrics: Sequence[Metric], errors: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "profile": profile.name,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "metrics": [m.to_json() for m in metrics],
        "errors": errors,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def make_workdir(keep: bool) -> Path:
    base = Path(tempfile.mkdtemp(prefix="appliance-bench-"))
    if not keep:
        import atexit

        atexit.register(shutil.rmtree, base, True)
    return base
