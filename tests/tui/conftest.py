"""Fixtures for the dashboard tests: a real engine on a temp socket, and the app driven by Pilot."""

from __future__ import annotations

import asyncio
import html
import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from textual.pilot import Pilot

from tests.fixtures.appliance import Appliance, UpstreamSpec
from tests.fixtures.pki import TestPKI
from tests.fixtures.registry import UpstreamRegistry
from tui.app import DashboardApp

# Comments the registry edits must keep (the fixture writes the first one itself).
EXTRA_COMMENT = "# operators' note: keep this comment through every edit from the dashboard"


@pytest.fixture
def engine(tmp_path: Path, pki: TestPKI, open_registry: UpstreamRegistry) -> Iterator[Appliance]:
    """A real `appliance run` with one upstream registry, its TOML carrying hand-written comments."""
    spec = UpstreamSpec(open_registry.name_port, open_registry.host_port)
    appliance = Appliance(tmp_path / "a", [spec], upstream_ca=pki.ca_file)
    text = appliance.config_path.read_text()
    appliance.config_path.write_text(f"{EXTRA_COMMENT}\n{text}")
    with appliance:
        yield appliance


def make_app(socket: Path, **kwargs: object) -> DashboardApp:
    options: dict[str, object] = {"poll_interval": 0.3, "retry_interval": 0.3}
    options.update(kwargs)
    return DashboardApp(socket, start_command="appliance run --config test.toml", **options)  # type: ignore[arg-type]


async def wait_for(
    pilot: Pilot[None], predicate: Callable[[], bool], what: str, within: float = 60.0
) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await pilot.pause(0.05)


def screen_text(app: DashboardApp) -> str:
    """Everything the terminal shows right now (the current screen over the ones behind it), as text.

    The same composition ``export_screenshot`` draws, exported as text instead of SVG.
    """
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def svg_text(app: DashboardApp) -> str:
    """The text of the SVG screenshot, for the same search in what a saved screenshot would leak."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def settle(pilot: Pilot[None], seconds: float = 0.3) -> None:
    await pilot.pause(seconds)
    await asyncio.sleep(0)
