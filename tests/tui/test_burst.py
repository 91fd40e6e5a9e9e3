"""Bursts of events stay smooth: rows are bounded and redraws are batched, whatever the rate."""

from __future__ import annotations

import time
from pathlib import Path

from appliance import protocol as p
from tests.tui.conftest import make_app, wait_for
from tui.screens.disconnected import DisconnectedScreen
from tui.widgets.event_table import EventTable


def _batch(start: int, count: int) -> p.EventBatch:
    return p.EventBatch(
        events=tuple(
            p.EventRecord(
                time=1_700_000_000.0 + i,
                client="10.0.0.1",
                registry="registry-1.docker.io",
                repository=f"library/app{i % 50}",
                kind=p.EventKind.BLOB,
                reference=f"sha256:{i:064x}",
                status=p.EventStatus.HIT if i % 3 else p.EventStatus.MISS,
                bytes=i * 100,
            )
            for i in range(start, start + count)
        )
    )


async def test_twenty_thousand_events_in_a_second_are_drawn_in_a_few_bounded_redraws(tmp_path: Path) -> None:
    # No engine needed: the events enter through the same sink the link feeds.
    app = make_app(tmp_path / "nothing.sock", retry_interval=3600)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DisconnectedScreen), "no engine")
        app.pop_screen()  # look at the dashboard anyway; the link retries only after an hour
        await pilot.pause(0.1)
        table = app.screen.query_one(EventTable)
        redraws = 0
        original = table._redraw

        def counting(rows: list) -> None:  # type: ignore[type-arg]
            nonlocal redraws
            redraws += 1
            original(rows)

        table._redraw = counting  # type: ignore[method-assign]
        started = time.monotonic()
        for burst in range(40):  # 40 frames of 500 events, as fast as the engine would send them
            app.link_events(_batch(burst * 500, 500))
            if burst % 8 == 0:
                await pilot.pause(0)
        newest = f"sha256:{19_999:064x}"
        # The last redraw is throttled: under a loaded machine it may come a little after the burst.
        await wait_for(
            pilot,
            lambda: bool(table.shown_records()) and table.shown_records()[0].reference == newest,
            "the newest event drawn on top",
        )
        elapsed = time.monotonic() - started
        assert app.feed.received == 20_000
        assert len(app.feed) <= app.feed.capacity
        assert table.row_count == table.max_rows  # bounded rows
        assert redraws <= 2 + elapsed / 0.1, (redraws, elapsed)  # batched: at most one per 100 ms
        assert elapsed < 5.0
        # The newest event is on top.
        assert table.shown_records()[0].reference == newest

        # Paused: nothing is redrawn, the title counts what waits; resuming shows it.
        await pilot.press("space")
        before = redraws
        app.link_events(_batch(20_000, 10))
        await pilot.pause(0.3)
        assert redraws == before
        assert "PAUSED, 10 new" in (table.parent.border_title or "")  # type: ignore[union-attr]
        await pilot.press("space")
        await pilot.pause(0.2)
        assert table.shown_records()[0].reference == f"sha256:{20_009:064x}"
