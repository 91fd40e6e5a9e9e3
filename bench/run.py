"""Run the benchmarks and print one table of ratios: ``python -m bench [--quick] [--only NAME ...]``.

Also writes every number (and the machine it came from) to ``bench/results/latest.json``.
Needs docker-registry, skopeo, nginx and curl on PATH (``make bench`` installs them as root).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # `bench/run.py` as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    access_pull,
    auth_pull,
    cold_pull,
    distant,
    firehose,
    fleet_pull,
    herd,
    startup,
    throughput,
    warm_pull,
)
from bench.harness import (
    FULL,
    PROFILES,
    QUICK,
    RESULTS,
    Context,
    Metric,
    Profile,
    format_table,
    machine,
    make_workdir,
    write_json,
)
from bench.peers import missing_binaries

BENCHMARKS: dict[str, ModuleType] = {
    "warm_pull": warm_pull,
    "cold_pull": cold_pull,
    "throughput": throughput,
    "herd": herd,
    "startup": startup,
    "firehose": firehose,
    "distant": distant,
    "auth_pull": auth_pull,
    "access_pull": access_pull,
    "fleet_pull": fleet_pull,
}


def run_benchmarks(
    ctx: Context, names: Sequence[str], log: Callable[[str], None] = print
) -> tuple[list[Metric], dict[str, str]]:
    """Run ``names`` in order; a benchmark that fails is reported in ``errors`` and the rest go on."""
    metrics: list[Metric] = []
    errors: dict[str, str] = {}
    for name in names:
        log(f"[{name}] ...")
        started = time.monotonic()
        try:
            metrics.extend(BENCHMARKS[name].run(ctx))
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(traceback.format_exc())
        log(f"[{name}] {time.monotonic() - started:.1f}s")
    return metrics, errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in about a minute")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="size profile (default: full)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write results")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    missing = missing_binaries()
    if missing:
        print(f"missing: {' '.join(missing)} (run `make bench` as root to install them)", file=sys.stderr)
        return 2
    profile: Profile = PROFILES[args.profile] if args.profile else (QUICK if args.quick else FULL)
    workdir = make_workdir(args.keep)
    print(f"profile {profile.name}, scratch {workdir}, machine {machine()}")
    ctx = Context(profile, workdir)
    try:
        metrics, errors = run_benchmarks(ctx, args.only or list(BENCHMARKS))
    finally:
        ctx.close()
    write_json(args.json, profile, metrics, errors)
    print()
    print(format_table(metrics))
    for name, error in errors.items():
        print(f"FAILED {name}: {error}")
    print(f"\nresults: {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
