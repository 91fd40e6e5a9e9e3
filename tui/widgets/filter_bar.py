"""Above the request table: a text filter and choices (status group, registry, who, audit) cycled by key
or click."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.events import Click
from textual.widgets import Input, Static

from tui.feed import STATUS_GROUPS, RowFilter
from tui.messages import FilterChanged
from tui.state import holder

ALL = "all"
# The audit choice: every decision, or only the refused ones (denied, unauthenticated, limited).
REFUSED = "refused"


class FilterChoice(Static):
    """A label that cycles through its values when clicked."""

    def __init__(self, caption: str, id: str) -> None:
        super().__init__(id=id)
        self.caption = caption
        self.values: list[str] = [ALL]
        self.index = 0

    @property
    def value(self) -> str:
        return self.values[self.index] if self.index < len(self.values) else ALL

    def on_mount(self) -> None:
        self._draw()

    def set_values(self, values: list[str]) -> None:
        current = self.value
        self.values = [ALL, *values]
        self.index = self.values.index(current) if current in self.values else 0
        self._draw()

    def cycle(self) -> None:
        self.index = (self.index + 1) % len(self.values)
        self._draw()
        self.post_message(FilterChanged())

    def reset(self) -> None:
        self.index = 0
        self._draw()

    def on_click(self, event: Click) -> None:
        event.stop()
        self.cycle()

    def _draw(self) -> None:
        self.update(f"{self.caption}: [b]{self.value}[/b] ▾")
        self.set_class(self.value != ALL, "-active")


class FilterBar(Horizontal):
    DEFAULT_CSS = """
    FilterBar { height: 1; }
    FilterBar Input { width: 1fr; height: 1; border: none; padding: 0 1; }
    FilterBar FilterChoice { width: auto; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: repository, reference, client, who…  (/)", id="filter-text")
        yield FilterChoice("status", id="filter-status")
        yield FilterChoice("registry", id="filter-registry")
        yield FilterChoice("who", id="filter-identity")
        yield FilterChoice("audit", id="filter-audit")

    def on_mount(self) -> None:
        self.query_one("#filter-status", FilterChoice).set_values(list(STATUS_GROUPS))
        self.query_one("#filter-audit", FilterChoice).set_values([REFUSED])
        holder(self).changed.subscribe(self, self._changed)
        self._refresh_registries()
        self._refresh_identities()

    def _changed(self, topic: str) -> None:
        if topic in ("config", "events"):
            self._refresh_registries()
        if topic == "events":
            self._refresh_identities()

    def _refresh_identities(self) -> None:
        choice = self.query_one("#filter-identity", FilterChoice)
        wanted = sorted(holder(self).feed.identities)
        if wanted != choice.values[1:]:
            choice.set_values(wanted)

    def _refresh_registries(self) -> None:
        state = holder(self).state
        names = set(holder(self).feed.registries)
        if state.config is not None:
            names.update(r.host for r in state.config.registries)
        choice = self.query_one("#filter-registry", FilterChoice)
        wanted = sorted(names)
        if wanted != choice.values[1:]:
            choice.set_values(wanted)

    @on(Input.Changed, "#filter-text")
    def _text_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(FilterChanged())

    def cycle_status(self) -> None:
        self.query_one("#filter-status", FilterChoice).cycle()

    def cycle_registry(self) -> None:
        self.query_one("#filter-registry", FilterChoice).cycle()

    def cycle_identity(self) -> None:
        self.query_one("#filter-identity", FilterChoice).cycle()

    def toggle_audit(self) -> None:
        self.query_one("#filter-audit", FilterChoice).cycle()

    def clear(self) -> None:
        self.query_one("#filter-text", Input).value = ""
        for choice in self.query(FilterChoice):
            choice.reset()
        self.post_message(FilterChanged())

    def current(self) -> RowFilter:
        status = self.query_one("#filter-status", FilterChoice).value
        registry = self.query_one("#filter-registry", FilterChoice).value
        identity = self.query_one("#filter-identity", FilterChoice).value
        return RowFilter(
            registry="" if registry == ALL else registry,
            statuses=STATUS_GROUPS.get(status, frozenset()),
            text=self.query_one("#filter-text", Input).value.strip(),
            identity="" if identity == ALL else identity,
            audit=self.query_one("#filter-audit", FilterChoice).value == REFUSED,
        )
