"""The dashboard says so when the engine's cache disk is full (issue 15, item 4): a real engine whose
cache is a small tmpfs, filled up for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tests.fixtures.tmpfs import MIB, fill_up, small_tmpfs
from tests.tui.conftest import make_app, screen_text, wait_for


@pytest.fixture
def engine_on_small_disk(
    tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry
) -> Iterator[Appliance]:
    workdir = tmp_path / "a"
    with small_tmpfs(workdir / "cache", 8 * MIB):
        spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
        with Appliance(workdir, [spec], upstream_ca=pki.ca_file) as appliance:
            yield appliance


async def test_the_cache_panel_shows_disk_full_once_the_cache_disk_fills_up(
    engine_on_small_disk: Appliance,
) -> None:
    app = make_app(engine_on_small_disk.control_socket)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.state.stats is not None, "the first stats")
        # 8 MiB free is under the default min_free_disk (1 GiB): low, not full yet.
        await wait_for(pilot, lambda: "disk low · 0 B of" in screen_text(app), "disk low shown")
        assert "DISK FULL" not in screen_text(app)

        fill_up(engine_on_small_disk.cache_dir)
        await wait_for(pilot, lambda: "DISK FULL · 0 B of" in screen_text(app), "DISK FULL shown")
