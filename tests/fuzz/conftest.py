"""Hypothesis settings shared by the quick run (``make test``) and the long one (``make fuzz``).

One code path for both: ``APPLIANCE_FUZZ_SECONDS`` unset runs each property once over a small,
fixed (derandomized) set of examples, in seconds; set, each property runs again and again with
fresh random examples until that many seconds have passed, then stops by itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.world import FuzzWorld

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile(
    "quick", max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=_SUPPRESS
)
settings.register_profile(
    "fuzz", max_examples=250, deadline=None, database=None, suppress_health_check=_SUPPRESS, print_blob=True
)


def fuzz_seconds() -> float | None:
    raw = os.environ.get("APPLIANCE_FUZZ_SECONDS", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise pytest.UsageError(f"APPLIANCE_FUZZ_SECONDS={raw!r} is not a number of seconds") from None
    return seconds if seconds > 0 else None


def run_property(prop: Callable[[], None]) -> None:
    """Run a ``@given`` property once (quick) or again and again until the budget is spent (fuzz)."""
    budget = fuzz_seconds()
    configured = settings(settings.get_profile("quick" if budget is None else "fuzz"))(prop)
    if budget is None:
        configured()
        return
    deadline = time.monotonic() + budget
    configured()
    while time.monotonic() < deadline:
        configured()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzWorld]:
    running = FuzzWorld(Path(tmp_path_factory.mktemp("fuzz")))
    running.start()
    try:
        yield running
    finally:
        running.stop()
