"""Downloads the engine is filling right now: one progress bar each, with bytes, rate and clients."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import ProgressBar, Static

from appliance import protocol as p
from tui import format as fmt
from tui.state import holder

MAX_SHOWN = 20


def fill_caption(fill: p.Fill) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(fill.repository, style="bold")
    text.append(f" {fmt.reference(fill.digest, 13)}", style="dim")
    clients = "client" if fill.clients == 1 else "clients"
    text.append(f" · {fill.clients} {clients}", style="cyan")
    text.append(f" · {fill.registry}", style="dim italic")
    return text


def fill_numbers(fill: p.Fill) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f" {fmt.progress(fill.done, fill.total)}")
    text.append(f" {fmt.rate(fill.rate)}", style="bold")
    if fill.error:
        text.append(f" {fill.error}", style="red")
    return text


class FillRow(Vertical):
    DEFAULT_CSS = """
    FillRow { height: 2; }
    FillRow Horizontal { height: 1; }
    FillRow .fill-caption { height: 1; }
    FillRow ProgressBar { width: 1fr; }
    FillRow ProgressBar Bar { width: 1fr; }
    FillRow .fill-numbers { width: auto; }
    """

    def __init__(self, fill: p.Fill) -> None:
        super().__init__()
        self.fill = fill
        self._composed = False

    def compose(self) -> ComposeResult:
        yield Static(fill_caption(self.fill), classes="fill-caption")
        with Horizontal():
            yield ProgressBar(total=self.fill.total, show_eta=False)
            yield Static(fill_numbers(self.fill), classes="fill-numbers")

    def on_mount(self) -> None:
        self._composed = True
        self.update_fill(self.fill)

    def update_fill(self, fill: p.Fill) -> None:
        self.fill = fill
        if not self._composed:
            return  # on_mount draws the latest fill
        self.query_one(ProgressBar).update(total=fill.total, progress=fill.done)
        self.query_one(".fill-numbers", Static).update(fill_numbers(fill))
        self.query_one(".fill-caption", Static).update(fill_caption(fill))


class InflightPanel(VerticalScroll):
    DEFAULT_CSS = """
    InflightPanel #inflight-empty { color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Static("No downloads in progress.", id="inflight-empty")

    def on_mount(self) -> None:
        holder(self).changed.subscribe(self, self._changed)
        self._rows: dict[str, FillRow] = {}
        self._redraw()

    def _changed(self, topic: str) -> None:
        if topic in ("inflight", "connection"):
            self._redraw()

    def _redraw(self) -> None:
        fills = holder(self).state.inflight.fills[:MAX_SHOWN]
        wanted = {f"{f.registry}/{f.digest}": f for f in fills}
        for key in list(self._rows):
            if key not in wanted:
                self._rows.pop(key).remove()
        for key, fill in wanted.items():
            row = self._rows.get(key)
            if row is None:
                row = FillRow(fill)
                self._rows[key] = row
                self.mount(row)
            else:
                row.update_fill(fill)
        self.query_one("#inflight-empty").display = not wanted
        count = len(holder(self).state.inflight.fills)
        self.border_title = f"In flight ({count})"
