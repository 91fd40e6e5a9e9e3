"""The dashboard against a real engine: live rows from a real pull, and the engine going and coming back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance import protocol as p
from tests.fixtures.appliance import Appliance
from tests.fixtures.clients import skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.registry import UpstreamRegistry
from tests.tui.conftest import make_app, screen_text, wait_for
from tui.screens.dashboard import DashboardScreen
from tui.screens.disconnected import DisconnectedScreen
from tui.widgets.event_table import EventTable

pytestmark = pytest.mark.e2e


def _pull(engine: Appliance, registry: UpstreamRegistry, image: ImageInfo, dest: Path) -> None:
    result = skopeo_copy(
        f"docker://{image.reference(registry.name_port)}",
        f"dir:{dest}",
        https_proxy=engine.url,
        cert_dir=engine.cert_dir(),
    ).check()
    assert result.digest == image.manifest_digest


def _blob_rows(table: EventTable, image: ImageInfo, *statuses: str) -> list[str]:
    """Digests of the blob GETs for ``image`` with one of ``statuses`` among the rows the table draws."""
    assert table.row_count == len(table.shown_records())
    return [
        r.reference
        for r in table.shown_records()
        if r.repository == image.repository
        and r.client != "pull-ahead"  # the appliance's own fetches ahead of the client
        and r.kind is p.EventKind.BLOB
        and r.method == "GET"
        and r.status in statuses
    ]


# A first pull: the blob the client asked for first is a MISS; pull-ahead fetches the others, so
# they show as COALESCED (joined a fill in flight) or HIT (already filled).
FIRST_PULL = ("MISS", "COALESCED", "HIT")


async def test_a_real_pull_shows_miss_rows_then_hit_rows_for_every_blob(
    tmp_path: Path, engine: Appliance, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(40_000, 30_000))
    app = make_app(engine.control_socket)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.state.connected, "connected")
        assert isinstance(app.screen, DashboardScreen)
        table = app.screen.query_one(EventTable)
        blobs = set(image.blob_digests)

        await asyncio.to_thread(_pull, engine, open_registry, image, tmp_path / "first")
        first = lambda: sorted(_blob_rows(table, image, *FIRST_PULL))  # noqa: E731
        await wait_for(pilot, lambda: first() == sorted(blobs), "a first-pull row per blob")
        assert _blob_rows(table, image, "MISS")
        hits_before = len(_blob_rows(table, image, "HIT"))

        await asyncio.to_thread(_pull, engine, open_registry, image, tmp_path / "second")
        await wait_for(
            pilot,
            lambda: len(_blob_rows(table, image, "HIT")) == hits_before + len(blobs),
            "a HIT row per blob",
        )
        assert sorted(_blob_rows(table, image, "HIT")[: len(blobs)]) == sorted(blobs)  # newest first
        # Newest first: the first row is from the second pull.
        top = [str(c) for c in table.get_row_at(0)]
        assert "MISS" not in top
        text = screen_text(app)
        assert "HIT" in text and "MISS" in text and image.repository.split("/")[-1][:10] in text
        # The cache panel follows the engine's stats.
        await wait_for(
            pilot, lambda: app.state.stats is not None and app.state.stats.totals.hits > 0, "stats"
        )
        assert app.state.stats is not None
        assert app.state.stats.cache.bytes >= image.total_size


async def test_stopping_the_engine_shows_the_disconnected_screen_and_a_restart_reconnects(
    engine: Appliance,
) -> None:
    app = make_app(engine.control_socket)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state.connected, "connected")
        first_pid = app.state.status.pid if app.state.status else None

        await asyncio.to_thread(engine.stop)
        await wait_for(pilot, lambda: isinstance(app.screen, DisconnectedScreen), "the disconnected screen")
        # Pushed is not yet drawn: under load the first frame can come a little later.
        await wait_for(pilot, lambda: "The engine went away" in screen_text(app), "the screen drawn")
        text = screen_text(app)
        assert "appliance run --config test.toml" in text  # the command that starts it
        squashed = "".join(ch for ch in text if not ch.isspace() and ch != "┃")
        assert str(engine.control_socket) in squashed  # where it looked, even when the path wraps
        assert "Reconnecting by itself" in text

        await asyncio.to_thread(engine.start)
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "back on the dashboard")
        assert app.state.connected
        assert app.state.status is not None and app.state.status.pid != first_pid
        # Polling and the event subscription both run against the new engine.
        new_pid = app.state.status.pid
        await wait_for(
            pilot,
            lambda: (
                app.state.stats is not None
                and app.state.stats.events.subscribers == 1
                and app.state.stats.since >= app.state.status.started - 1
                and app.state.status is not None
                and app.state.status.pid == new_pid
            ),
            "the new engine's stats showing our event subscription",
        )
        assert app.state.status.api_version == p.API_VERSION
