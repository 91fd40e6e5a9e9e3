"""The live request table: rows drawn from the bounded ``EventFeed`` at most every 100 ms.

A burst only marks the table due; one timer redraws the newest ``max_rows`` matching rows.  While
paused nothing is redrawn (the feed keeps filling, bounded) and the title counts what is waiting.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from appliance import protocol as p
from appliance.protocol.events import AccessResult
from tui import format as fmt
from tui.feed import Row, RowFilter
from tui.state import holder

FLUSH_INTERVAL = 0.1
DEFAULT_MAX_ROWS = 200
# (label, key, width at full size, narrowest width); Repository takes what is left.
COLUMNS = (
    ("Time", "time", 8, 8),
    ("Status", "status", 11, 11),
    ("Who", "who", 12, 8),
    ("Registry", "registry", 22, 12),
    ("Repository", "repository", 0, 12),
    ("Reference", "reference", 19, 13),
    ("Size", "size", 9, 9),
    ("Took", "took", 6, 6),
)
_CELL_PADDING = 2  # DataTable pads each cell by one column on each side
_ROOMY_REPOSITORY = 24
_LEAST_IMAGE = 16
# How the Who cell reads for a refused decision; allowed ones (and none) keep the row's colours.
ACCESS_STYLES: dict[str, str] = {
    AccessResult.DENIED.value: "bold red",
    AccessResult.UNAUTHENTICATED.value: "bold red",
    AccessResult.LIMITED.value: "bold yellow",
}


def column_widths(width: int) -> dict[str, int]:
    """Fit the columns into ``width`` cells: shrink reference, who and registry first, give the rest to
    repository.

    When even that leaves the repository cramped (80 columns), registry and repository share one
    ``Image`` column (``registry/repository``); if that is still too narrow, the Took column goes, so
    every other column still fits without scrolling sideways.
    """
    widths = {key: full for _label, key, full, _least in COLUMNS}

    def spare() -> int:
        return width - 2 - _CELL_PADDING * len(widths) - sum(widths.values())  # 2: the scrollbar

    for key in ("reference", "who", "registry"):
        if spare() >= _ROOMY_REPOSITORY:
            break
        least = next(c[3] for c in COLUMNS if c[1] == key)
        widths[key] -= min(widths[key] - least, _ROOMY_REPOSITORY - spare())
    if spare() >= _LEAST_IMAGE:
        widths["repository"] = spare()
        return widths
    # One column fewer: its padding and the registry's width go to the image name.
    del widths["registry"], widths["repository"]
    widths["image"] = 0
    if spare() < _LEAST_IMAGE:
        del widths["took"]
    widths["image"] = max(12, spare())
    return widths


def status_text(status: p.EventStatus) -> Text:
    return Text(status.value, style=fmt.STATUS_STYLES.get(status, ""))


def who_text(record: p.EventRecord, width: int) -> Text:
    """The identity, or a dim dash for none; red or yellow when the decision refused the request."""
    style = ACCESS_STYLES.get(record.access, "")
    if not record.identity:
        return Text("-", style=style or "dim")
    return Text(fmt.cut(record.identity, width), style=style)


def row_cells(record: p.EventRecord, widths: dict[str, int]) -> tuple[Text | str, ...]:
    size = fmt.size(record.bytes) if record.bytes else "-"
    if "image" in widths:
        names: tuple[str, ...] = (fmt.cut(f"{record.registry}/{record.repository}", widths["image"]),)
    else:
        names = (
            fmt.cut(record.registry, widths["registry"]),
            fmt.cut(record.repository, widths["repository"]),
        )
    took = (Text(fmt.duration(record.duration), justify="right"),) if "took" in widths else ()
    return (
        fmt.clock(record.time),
        status_text(record.status),
        who_text(record, widths["who"]),
        *names,
        fmt.reference(record.reference, widths["reference"]),
        Text(size, justify="right"),
        *took,
    )


class EventTable(DataTable[Text | str]):
    DEFAULT_CSS = """
    EventTable { height: 1fr; }
    """

    def __init__(self, *, max_rows: int = DEFAULT_MAX_ROWS, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.max_rows = max_rows
        self.paused = False
        self.newest_first = True
        self.row_filter = RowFilter()
        self._drawn_version = -1
        self._drawn_seq = -1
        self._last_flush = 0.0
        self._timer: Timer | None = None
        self._shown: list[Row] = []
        self._widths: dict[str, int] = {}
        # Redraws never take more than about a third of the time, even on a slow machine.
        self._interval = FLUSH_INTERVAL

    def on_mount(self) -> None:
        self._layout_columns(self.size.width or 100)
        holder(self).changed.subscribe(self, self._changed)
        self.flush()

    def on_resize(self) -> None:
        if self._layout_columns(self.size.width):
            self.flush()

    def _layout_columns(self, width: int) -> bool:
        widths = column_widths(width)
        if widths == self._widths:
            return False
        self._widths = widths
        self.clear(columns=True)
        for label, key, _full, _least in COLUMNS:
            if key == "registry" and "image" in widths:
                label, key = "Image", "image"
            if key not in widths:
                continue
            heading: str | Text = Text(label, justify="right") if key in ("size", "took") else label
            self.add_column(heading, key=key, width=widths[key])
        return True

    def _changed(self, topic: str) -> None:
        if topic == "events":
            self.schedule()

    def schedule(self) -> None:
        """Redraw soon: now if the last redraw is old enough, else when the interval is up."""
        if self.paused or self._timer is not None:
            self._update_title()
            return
        wait = self._interval - (time.monotonic() - self._last_flush)
        if wait <= 0:
            self.flush()
        else:
            self._timer = self.set_timer(wait, self._timed_flush)

    def _timed_flush(self) -> None:
        self._timer = None
        if not self.paused:
            self.flush()

    def flush(self) -> None:
        feed = holder(self).feed
        self._last_flush = time.monotonic()
        rows = feed.view(self.row_filter, newest_first=self.newest_first, limit=self.max_rows)
        self._drawn_version = feed.version
        self._drawn_seq = feed.last_seq()
        self._redraw(rows)
        self._update_title()
        self._interval = max(FLUSH_INTERVAL, 3 * (time.monotonic() - self._last_flush))

    def _redraw(self, rows: list[Row]) -> None:
        selected = self._selected_seq()
        at_edge = self.cursor_row <= 0 if self.newest_first else self.cursor_row >= self.row_count - 1
        self.clear()
        for row in rows:
            self.add_row(*row_cells(row.record, self._widths), key=str(row.seq))
        self._shown = rows
        if not rows:
            return
        if at_edge or selected is None:
            target = 0 if self.newest_first else len(rows) - 1
        else:
            try:
                target = self.get_row_index(str(selected))
            except RowDoesNotExist:  # the row left the window: back to the edge
                target = 0 if self.newest_first else len(rows) - 1
        self.move_cursor(row=target, animate=False, scroll=True)

    def _selected_seq(self) -> int | None:
        if not self._shown or not (0 <= self.cursor_row < len(self._shown)):
            return None
        return self._shown[self.cursor_row].seq

    def shown_records(self) -> list[p.EventRecord]:
        """The events drawn right now, in display order."""
        return [row.record for row in self._shown]

    def selected_record(self) -> p.EventRecord | None:
        if not self._shown or not (0 <= self.cursor_row < len(self._shown)):
            return None
        return self._shown[self.cursor_row].record

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused:
            self.flush()
        self._update_title()

    def set_order(self, newest_first: bool) -> None:
        self.newest_first = newest_first
        self.flush()

    def set_filter(self, wanted: RowFilter) -> None:
        self.row_filter = wanted
        self.flush()

    def _update_title(self) -> None:
        feed = holder(self).feed
        order = "newest first" if self.newest_first else "tailing"
        title = f"Requests · {order} · {len(self._shown)} shown"
        if self.row_filter.active:
            title += " (filtered)"
        if self.paused:
            waiting = feed.last_seq() - self._drawn_seq
            title += f" · PAUSED, {max(0, waiting)} new"
        if feed.engine_dropped:
            title += f" · {feed.engine_dropped} dropped by the engine"
        if isinstance(self.parent, Widget):
            self.parent.border_title = title
