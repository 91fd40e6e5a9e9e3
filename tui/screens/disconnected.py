"""Shown while no engine answers: what is wrong, the command that starts it, and the retry count.

The app pops it by itself when the link reconnects.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui.state import holder


class DisconnectedScreen(Screen[None]):
    BINDINGS = [Binding("y", "copy_command", "Copy start command")]

    def compose(self) -> ComposeResult:
        with Center(id="disconnected-center"):
            with Vertical(id="disconnected-box"):
                yield Static(id="disconnected-title")
                yield Static(id="disconnected-body")
                yield Static(id="start-command")
                yield Static(id="retry")
        yield Footer()

    def on_mount(self) -> None:
        holder(self).changed.subscribe(self, self._changed)
        self._redraw()

    def _changed(self, topic: str) -> None:
        if topic == "connection":
            self._redraw()

    def _redraw(self) -> None:
        state = holder(self).state
        self.query_one("#disconnected-box").border_title = "Engine not reachable"
        title = "The engine is not running" if not state.ever_connected else "The engine went away"
        self.query_one("#disconnected-title", Static).update(Text(f"⚠  {title}", style="bold red"))
        body = Text()
        body.append("Nothing answers on the control socket\n", style="")
        body.append(state.socket_path, style="bold")
        body.append("\n\nStart it with:", style="")
        self.query_one("#disconnected-body", Static).update(body)
        self.query_one("#start-command", Static).update(Text(state.start_command, style="bold"))
        retry = Text()
        retry.append("Reconnecting by itself every second", style="dim")
        if state.attempt:
            retry.append(f" (attempt {state.attempt})", style="dim")
        retry.append(".\n", style="dim")
        retry.append(state.reason, style="dim italic")
        self.query_one("#retry", Static).update(retry)

    def action_copy_command(self) -> None:
        self.app.copy_to_clipboard(holder(self).state.start_command)
        self.notify("start command copied to the clipboard", timeout=3)
