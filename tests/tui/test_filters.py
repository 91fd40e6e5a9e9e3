"""The audit and identity filters, driven by their keys over the recorded stream (the snapshots' fake
engine: a real socket and the real protocol, with events that carry identities and ACL denials), and
the Who column over a real engine's real pull."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.text import Text

from tests.fixtures.appliance import Appliance
from tests.fixtures.clients import skopeo_copy
from tests.fixtures.images import ImagePusher
from tests.fixtures.registry import UpstreamRegistry
from tests.tui.conftest import make_app, screen_text, wait_for
from tests.tui.fake_engine import FakeEngine
from tui.feed import NO_IDENTITY
from tui.widgets.event_table import EventTable
from tui.widgets.filter_bar import FilterBar


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    with tempfile.TemporaryDirectory(prefix="tui-filter-") as directory:
        engine = FakeEngine(Path(directory) / "control.sock").start()
        yield engine
        engine.stop()


async def test_d_keeps_only_refused_decisions_and_i_walks_through_the_identities(
    fake_engine: FakeEngine,
) -> None:
    recorded = fake_engine.data["events"]
    refused = [e for e in recorded if e["access"] in ("denied", "unauthenticated", "limited")]
    assert refused  # the recording has some, or this test proves nothing
    app = make_app(fake_engine.socket_path, poll_interval=3600)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.feed.received >= len(recorded), "the recorded events")
        table = app.screen.query_one(EventTable)
        await wait_for(pilot, lambda: len(table.shown_records()) == len(recorded), "every row drawn")

        await pilot.press("d")
        await wait_for(pilot, lambda: len(table.shown_records()) == len(refused), "only refused rows")
        assert {r.access for r in table.shown_records()} == {"denied"}
        assert "audit: refused" in screen_text(app) and "(filtered)" in screen_text(app)

        await pilot.press("d", "i")  # audit off; who: the first identity in order
        bar = app.screen.query_one(FilterBar)
        choices = sorted({e["identity"] or NO_IDENTITY for e in recorded})
        seen = []
        for _ in choices:
            wanted = bar.current().identity
            await wait_for(
                pilot,
                lambda wanted=wanted: (
                    all(  # type: ignore[misc]
                        (r.identity or NO_IDENTITY) == wanted for r in table.shown_records()
                    )
                    and len(table.shown_records())
                    == sum(1 for e in recorded if (e["identity"] or NO_IDENTITY) == wanted)
                ),
                f"only {wanted}'s rows",
            )
            seen.append(wanted)
            await pilot.press("i")
        assert seen == choices
        assert bar.current().identity == ""  # round to "all" again
        await pilot.press("i", "x")
        await wait_for(pilot, lambda: len(table.shown_records()) == len(recorded), "filters cleared")


@pytest.mark.e2e
async def test_a_real_pull_without_an_identity_shows_a_dash_in_the_who_column(
    tmp_path: Path, engine: Appliance, open_registry: UpstreamRegistry, push_test_image: ImagePusher
) -> None:
    image = push_test_image(open_registry, layer_sizes=(10_000,))
    app = make_app(engine.control_socket)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.state.connected, "connected")
        table = app.screen.query_one(EventTable)
        await asyncio.to_thread(
            lambda: skopeo_copy(
                f"docker://{image.reference(open_registry.name_port)}",
                f"dir:{tmp_path / 'pulled'}",
                https_proxy=engine.url,
                cert_dir=engine.cert_dir(),
            ).check()
        )
        await wait_for(pilot, lambda: len(table.shown_records()) >= 2, "the pull's rows")
        assert all(r.identity == "" for r in table.shown_records())  # access control is off
        who = table.get_row_at(0)[2]  # the Who cell
        assert isinstance(who, Text) and who.plain == "-" and "dim" in str(who.style)
        await pilot.press("i")
        await wait_for(
            pilot, lambda: app.screen.query_one(FilterBar).current().identity == NO_IDENTITY, "who: (none)"
        )
        await wait_for(
            pilot, lambda: len(table.shown_records()) == len(app.feed), "every row kept: none has an identity"
        )
