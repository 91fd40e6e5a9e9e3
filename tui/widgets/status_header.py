"""The top line: version, uptime, listen address, CA fingerprint and whether the engine answers."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui import format as fmt
from tui.state import holder


class StatusHeader(Static):
    DEFAULT_CSS = """
    StatusHeader { height: 1; }
    """

    def on_mount(self) -> None:
        holder(self).changed.subscribe(self, self._changed)
        self._redraw()

    def _changed(self, topic: str) -> None:
        if topic in ("status", "connection"):
            self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        state = holder(self).state
        text = Text(no_wrap=True, overflow="ellipsis")
        narrow = self.size.width < 120
        text.append(" appliance " if narrow else " registry-appliance ", style="bold reverse")
        text.append(" ")
        if state.connected:
            text.append("● connected", style="bold green")
        elif state.ever_connected:
            text.append("○ reconnecting…", style="bold red")
        else:
            text.append("○ connecting…", style="bold yellow")
        status = state.status
        if status is not None:
            text.append(f" v{status.version}", style="bold")
            text.append("  up ", style="dim")
            text.append(fmt.uptime(status.uptime))
            text.append("  " if narrow else "  listen ", style="dim")
            text.append(", ".join(status.listen))
            text.append("  CA ", style="dim")
            text.append(fmt.fingerprint(status.ca.fingerprint_sha256, pairs=2 if narrow else 4))
            if status.ca.days_left < 30 or not narrow:
                days_style = "red" if status.ca.days_left < 30 else "dim"
                text.append(f" ({status.ca.days_left}d left)", style=days_style)
        self.update(text)
