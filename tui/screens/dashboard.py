"""The main screen: status line, the live request table with its filters, cache usage and in-flight fills."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input

from tui.messages import FilterChanged
from tui.widgets.cache_panel import CachePanel
from tui.widgets.event_table import EventTable
from tui.widgets.filter_bar import FilterBar
from tui.widgets.inflight import InflightPanel
from tui.widgets.status_header import StatusHeader


class DashboardScreen(Screen[None]):
    BINDINGS = [
        Binding("space", "pause", "Pause"),
        Binding("o", "order", "Order"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("s", "cycle_status", "Status filter", show=False),
        Binding("g", "cycle_registry", "Registry filter", show=False),
        Binding("d", "toggle_audit", "Audit"),
        Binding("i", "cycle_identity", "Who"),
        Binding("x", "clear_filters", "Clear filters", show=False),
        Binding("r", "app.registries", "Registries"),
        Binding("c", "app.cache", "Cache"),
        Binding("a", "app.access", "Access"),
        Binding("e", "app.env", "Env vars"),
    ]

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status-header")
        with Horizontal(id="main"):
            with Vertical(id="stream-pane"):
                yield FilterBar(id="filter-bar")
                yield EventTable(id="events")
            with Vertical(id="side"):
                yield CachePanel(id="cache-panel")
                yield InflightPanel(id="inflight")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#stream-pane").border_title = "Requests"
        self.query_one("#cache-panel").border_title = "Cache"
        self.query_one(EventTable).focus()

    @property
    def table(self) -> EventTable:
        return self.query_one(EventTable)

    def action_pause(self) -> None:
        self.table.set_paused(not self.table.paused)
        self.notify("stream paused" if self.table.paused else "stream resumed", timeout=2)

    def action_order(self) -> None:
        self.table.set_order(not self.table.newest_first)

    def action_focus_filter(self) -> None:
        self.query_one("#filter-text", Input).focus()

    def action_cycle_status(self) -> None:
        self.query_one(FilterBar).cycle_status()

    def action_cycle_registry(self) -> None:
        self.query_one(FilterBar).cycle_registry()

    def action_toggle_audit(self) -> None:
        self.query_one(FilterBar).toggle_audit()

    def action_cycle_identity(self) -> None:
        self.query_one(FilterBar).cycle_identity()

    def action_clear_filters(self) -> None:
        self.query_one(FilterBar).clear()

    @on(FilterChanged)
    def _filter_changed(self) -> None:
        self.table.set_filter(self.query_one(FilterBar).current())

    @on(Input.Submitted, "#filter-text")
    def _filter_done(self) -> None:
        self.table.focus()

    def key_escape(self) -> None:
        if isinstance(self.focused, Input):
            self.table.focus()
