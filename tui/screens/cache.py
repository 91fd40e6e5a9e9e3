"""Cached images, with purge (an image or a whole registry) and pin/unpin, each confirmed first."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from appliance import protocol as p
from appliance.control.client import ControlClient, ControlError, EngineUnavailable
from tui import format as fmt
from tui.calls import call_engine
from tui.connection import NotConnected
from tui.screens.confirm import ConfirmScreen
from tui.state import holder
from tui.widgets.status_header import StatusHeader


class CacheScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("p", "pin", "Pin/unpin"),
        Binding("d", "purge_image", "Purge image"),
        Binding("D", "purge_registry", "Purge registry"),
        Binding("f5", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.images: tuple[p.ImageEntry, ...] = ()

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        with Vertical(id="images-box"):
            yield DataTable(id="images", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#images", DataTable)
        table.add_column("Registry", key="registry")
        table.add_column("Repository", key="repository")
        table.add_column(Text("Size", justify="right"), key="size")
        table.add_column(Text("Blobs", justify="right"), key="blobs")
        table.add_column("Pinned", key="pinned")
        table.add_column("Last used", key="last")
        table.add_column("Tags", key="tags")
        self.query_one("#images-box").border_title = "Cached images"
        table.focus()
        self.action_reload()

    @work(exclusive=True, group="images")
    async def action_reload(self) -> None:
        try:
            listing = await holder(self).link.client.images()
        except (ControlError, EngineUnavailable, NotConnected) as exc:
            self.notify(str(exc), severity="error")
            return
        self.images = listing.images
        table = self.query_one("#images", DataTable)
        row = table.cursor_row
        table.clear()
        now = time.time()
        for image in self.images:
            table.add_row(
                image.registry,
                Text(image.repository, style="bold"),
                Text(fmt.size(image.size), justify="right"),
                Text(str(image.blobs), justify="right"),
                Text("pinned", style="bold cyan") if image.pinned else "",
                fmt.ago(image.last_access, now),
                fmt.cut(", ".join(image.tags), 40),
            )
        self.query_one("#images-box").border_title = f"Cached images ({len(self.images)})  ·  p pin · d purge"
        if self.images:
            table.move_cursor(row=min(row, len(self.images) - 1))

    def _selected(self) -> p.ImageEntry | None:
        row = self.query_one("#images", DataTable).cursor_row
        return self.images[row] if self.images and 0 <= row < len(self.images) else None

    def _confirm_then(
        self,
        question: str,
        detail: str,
        label: str,
        call: Callable[[ControlClient], Awaitable[Any]],
        done: Callable[[Any], str],
    ) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._run(call, done)

        self.app.push_screen(ConfirmScreen(question, detail, label), answered)

    def action_pin(self) -> None:
        image = self._selected()
        if image is None:
            return
        pin = not image.pinned
        verb = "Pin" if pin else "Unpin"
        self._confirm_then(
            f"{verb} {image.registry}/{image.repository}?",
            "Pinned images are never evicted, including blobs fetched later."
            if pin
            else "It can be evicted again when the cache is full.",
            verb,
            lambda client: client.pin(image.registry, image.repository, pin),
            lambda result: f"{verb.lower()}ned {image.repository} ({result.entries} entries)",
        )

    def action_purge_image(self) -> None:
        image = self._selected()
        if image is None:
            return
        self._confirm_then(
            f"Purge {image.registry}/{image.repository}?",
            f"{fmt.size(image.size)} in {image.blobs} blobs are deleted; the next pull fetches them again.",
            "Purge",
            lambda client: client.purge(p.PurgeRequest(registry=image.registry, repository=image.repository)),
            lambda result: f"purged {image.repository}: {result.removed} entries removed",
        )

    def action_purge_registry(self) -> None:
        image = self._selected()
        if image is None:
            return
        registry = image.registry
        self._confirm_then(
            f"Purge everything cached from {registry}?",
            "Every image of this registry is deleted from the cache.",
            "Purge all",
            lambda client: client.purge(p.PurgeRequest(registry=registry)),
            lambda result: f"purged {registry}: {result.removed} entries removed",
        )

    @work(group="cache-action")
    async def _run(self, call: Callable[[ControlClient], Awaitable[Any]], done: Callable[[Any], str]) -> None:
        result = await call_engine(self, call)
        if result is None:
            return
        self.notify(done(result))
        self.action_reload()
