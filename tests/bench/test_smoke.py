"""Issue 9: every benchmark runs once at a tiny size, so `make bench` cannot rot between releases.

The numbers at this size mean nothing; what is checked is that each benchmark sets up its peers,
drives real clients through them and produces finite metrics, plus the one ratio that is a
correctness property at any size: a thundering herd costs exactly one upstream fetch, and so do
three fleet replicas pulling the same image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import fleet_pull
from bench.harness import SMOKE, Context, Metric, format_table
from bench.peers import missing_binaries
from bench.run import BENCHMARKS, run_benchmarks

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(missing_binaries()), reason=f"needs {' '.join(missing_binaries())}"),
]


@pytest.fixture(scope="module")
def bench_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    ctx = Context(SMOKE, Path(tmp_path_factory.mktemp("bench")), log=lambda _line: None)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_runs_at_tiny_size_and_reports_finite_metrics(bench_context: Context, name: str) -> None:
    if name == "fleet_pull" and fleet_pull.weed_available() is not None:
        pytest.skip(fleet_pull.weed_available() or "")
    metrics, errors = run_benchmarks(bench_context, [name], log=lambda _line: None)
    assert errors == {}
    assert metrics, f"{name} produced no metrics"
    assert all(math.isfinite(m.value) and m.value > 0 for m in metrics), format_table(metrics)
    if name == "herd":
        herd = _one(metrics, "upstream bytes / image size")
        assert herd.value == 1.0, herd.detail
    if name == "fleet_pull":  # three replicas sharing a bucket fetch each blob once between them
        fleet = _one(metrics, "3 replicas")
        assert fleet.value == 1.0, fleet.detail


def _one(metrics: list[Metric], prefix: str) -> Metric:
    (metric,) = [m for m in metrics if m.name.startswith(prefix)]
    return metric
