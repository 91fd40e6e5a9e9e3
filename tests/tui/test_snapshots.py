"""Snapshots of the dashboard, the registries and access editors and the disconnected screen at 80x24
and 160x48.

Why a replayed recording and not the real engine: snapshots must be identical on every run, and a real
engine has a live clock (uptime, event times), a fresh CA fingerprint per start and pull timings that
vary.  So these tests serve recorded control-socket answers (``data/recorded.json``) from
``FakeEngine``: a real Unix socket, the real HTTP/WebSocket protocol, every payload validated by
``appliance.protocol``, fixed content.  Clocks are pinned too: TZ=UTC for the event times, and the
poll interval is long enough that the throughput line stays at its flat start.  The behaviour tests
(test_live_*.py) drive the same app against a real engine.

Update after an intended change: ``pytest tests/tui/test_snapshots.py --snapshot-update``, then look
at the SVGs in ``__snapshots__`` before committing them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from appliance import protocol as p
from tests.tui.fake_engine import FakeEngine, load_recording
from tui.app import DashboardApp
from tui.screens.access import AccessScreen
from tui.screens.forms import RegistryForm
from tui.screens.registries import RegistriesScreen
from tui.widgets.event_table import EventTable

SIZES = [(80, 24), (160, 48)]


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def fake_engine(utc: None) -> Iterator[FakeEngine]:
    # A short directory: Unix socket paths are limited to ~100 bytes.
    with tempfile.TemporaryDirectory(prefix="tui-snap-") as directory:
        engine = FakeEngine(Path(directory) / "control.sock").start()
        yield engine
        engine.stop()


def _fleet_recording() -> dict[str, Any]:
    """The recording, as answered by replica ``b`` of three sharing a bucket (issue 18)."""
    data = load_recording()
    now = data["status"]["started"] + data["status"]["uptime"]
    fleet = p.FleetStatus(
        store="s3://cache/fleet",
        replica_id="b",
        replicas=(
            p.FleetReplica("a", "http://10.0.0.5:3128", now - 4),
            p.FleetReplica("b", "http://10.0.0.6:3128", now - 1),
            p.FleetReplica("c", "http://10.0.0.7:3128", now - 12),
        ),
        lease_wins=12,
        lease_losses=30,
        lease_takeovers=1,
        l2_hits=40,
        follow_bytes=350 * 1024 * 1024,
        bucket_bytes=50 * 1024**3,
        bucket_max=500 * 1024**3,
        janitor="a",
    )
    data["status"] = {**data["status"], "fleet": fleet.to_json()}
    return data


@pytest.fixture
def fleet_engine(utc: None) -> Iterator[FakeEngine]:
    with tempfile.TemporaryDirectory(prefix="tui-snap-") as directory:
        engine = FakeEngine(Path(directory) / "control.sock", _fleet_recording()).start()
        yield engine
        engine.stop()


def _app(socket: Path) -> DashboardApp:
    return DashboardApp(
        socket,
        start_command="appliance run --config /etc/registry-appliance/appliance.toml",
        poll_interval=3600,
        retry_interval=3600,
    )


def _until(check: Callable[[DashboardApp], bool], *, settle: bool = True) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, DashboardApp)
        for _ in range(200):
            if check(app):
                break
            await pilot.pause(0.05)
        else:
            raise AssertionError("the app never reached the state to snapshot")
        if settle:
            # The request table redraws in batches (every 100 ms or more): wait until it has drawn
            # the whole feed and has no redraw pending, then for what that redraw scheduled.
            await _until(_tables_drawn, settle=False)(pilot)
            await pilot.wait_for_scheduled_animations()
            await pilot.pause()

    return run_before


def _dashboard_ready(app: DashboardApp) -> bool:
    return app.state.connected and app.state.stats is not None and app.feed.received >= 60


def _tables_drawn(app: DashboardApp) -> bool:
    return all(
        table._drawn_version == app.feed.version and table._timer is None
        for table in app.screen.query(EventTable)
    )


def _form_ready(app: DashboardApp) -> bool:
    screen = app.screen
    return (
        isinstance(screen, RegistryForm)
        and screen.existing is not None
        and app.focused is not None
        and app.focused.id == "aliases"
    )


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard_snapshot(snap_compare: Any, fake_engine: FakeEngine, size: tuple[int, int]) -> None:
    assert snap_compare(
        _app(fake_engine.socket_path), terminal_size=size, run_before=_until(_dashboard_ready)
    )


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard_of_a_fleet_replica_snapshot(
    snap_compare: Any, fleet_engine: FakeEngine, size: tuple[int, int]
) -> None:
    def ready(app: DashboardApp) -> bool:
        return _dashboard_ready(app) and app.state.status is not None

    assert snap_compare(_app(fleet_engine.socket_path), terminal_size=size, run_before=_until(ready))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_registries_editor_snapshot(
    snap_compare: Any, fake_engine: FakeEngine, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await _until(_dashboard_ready)(pilot)
        await pilot.press("r")
        await _until(lambda app: isinstance(app.screen, RegistriesScreen))(pilot)

    assert snap_compare(_app(fake_engine.socket_path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_registry_form_snapshot(snap_compare: Any, fake_engine: FakeEngine, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await _until(_dashboard_ready)(pilot)
        await pilot.press("r")
        await _until(lambda app: isinstance(app.screen, RegistriesScreen))(pilot)
        await pilot.press("down", "down", "e")
        # The form is up once it has focused its first editable field (on_mount); then let what
        # that focus scheduled (the cursor, the scroll) settle.  A fixed pause lost this race under load.
        await _until(_form_ready, settle=False)(pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(_app(fake_engine.socket_path), terminal_size=size, run_before=run_before)


def _access_ready(app: DashboardApp) -> bool:
    screen = app.screen
    return isinstance(screen, AccessScreen) and screen.view is not None


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_access_editor_snapshot(snap_compare: Any, fake_engine: FakeEngine, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await _until(_dashboard_ready)(pilot)
        await pilot.press("a")
        await _until(_access_ready)(pilot)

    assert snap_compare(_app(fake_engine.socket_path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_disconnected_snapshot(snap_compare: Any, utc: None, size: tuple[int, int]) -> None:
    socket = Path("/nonexistent/registry-appliance/control.sock")  # nothing can ever answer here
    assert snap_compare(
        _app(socket), terminal_size=size, run_before=_until(lambda app: app.state.attempt >= 1)
    )
