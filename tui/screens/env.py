"""The configuration as the seed's ``docker run -e`` variables (passwords masked by the engine), with copy."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from appliance import protocol as p
from appliance.control.client import ControlError, EngineUnavailable
from tui.connection import NotConnected
from tui.state import holder


def docker_run_lines(env: p.EnvView) -> str:
    """``docker run`` with one ``-e`` per variable, ready to paste."""
    if not env.shell.strip():
        return "docker run rpardini/docker-registry-proxy"
    lines = [f"  -e {line} \\" for line in env.shell.splitlines() if line.strip()]
    return "\n".join(["docker run -d --name registry-proxy \\", *lines, "  rpardini/docker-registry-proxy"])


class EnvScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("y", "copy", "Copy"),
        Binding("f5", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.env: p.EnvView | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="env-box"):
            yield Static(id="env-warnings")
            yield Static(Text("loading…", style="dim"), id="env-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#env-box").border_title = "Environment variables (docker run -e)  ·  y copy"
        self.action_reload()

    @work(exclusive=True, group="env")
    async def action_reload(self) -> None:
        try:
            env = await holder(self).link.client.env()
        except (ControlError, EngineUnavailable, NotConnected) as exc:
            self.query_one("#env-text", Static).update(Text(str(exc), style="red"))
            return
        self.env = env
        self.query_one("#env-text", Static).update(Text(docker_run_lines(env)))
        warnings = Text()
        for warning in env.warnings:
            warnings.append(f"! {warning}\n", style="yellow")
        self.query_one("#env-warnings", Static).update(warnings)

    def action_copy(self) -> None:
        if self.env is None:
            return
        self.app.copy_to_clipboard(docker_run_lines(self.env))
        self.notify(f"copied {len(self.env.pairs)} variables to the clipboard", timeout=3)
