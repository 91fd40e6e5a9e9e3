"""The dashboard application: builds the screens, owns the engine link, turns its news into messages.

Thin on purpose: drawing is in ``widgets/`` and ``screens/``, sockets in ``connection.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal

from appliance import protocol as p
from appliance.control.client import ControlError, EngineUnavailable
from tui.connection import EngineLink, NotConnected
from tui.feed import DEFAULT_CAPACITY, EventFeed
from tui.messages import (
    ConfigUpdated,
    EngineConnected,
    EngineDisconnected,
    FeedChanged,
    InflightUpdated,
    StatsUpdated,
    StatusUpdated,
)
from tui.screens.access import AccessScreen
from tui.screens.access_forms import RuleForm, TokenForm, TokenShown, UserForm
from tui.screens.cache import CacheScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.disconnected import DisconnectedScreen
from tui.screens.env import EnvScreen
from tui.screens.forms import CredentialForm, RegistryForm
from tui.screens.help import HelpScreen, Section
from tui.screens.registries import RegistriesScreen
from tui.state import DashboardState


class DashboardApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "registry-appliance"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark,f1", "help", "Help"),
        Binding("ctrl+p", "command_palette", "Commands", show=False),
    ]

    def __init__(
        self,
        socket_path: Path,
        *,
        start_command: str = "appliance run",
        poll_interval: float = 1.0,
        retry_interval: float = 1.0,
        replay: int = 200,
        feed_capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        super().__init__()
        self.state = DashboardState(socket_path=str(socket_path), start_command=start_command)
        self.feed = EventFeed(feed_capacity)
        self.changed: Signal[str] = Signal(self, "changed")
        self.link = EngineLink(
            socket_path, self, poll_interval=poll_interval, retry_interval=retry_interval, replay=replay
        )

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen())
        self.run_worker(self.link.run(), name="engine-link", group="link", exclusive=True)

    async def on_unmount(self) -> None:
        await self.link.close()

    # -- the link's sink: called on this loop, turned into (coalescing) messages ------------------

    def link_connected(self, status: p.Status, config: p.ConfigView, same_engine: bool) -> None:
        self.post_message(EngineConnected(status, config, same_engine))

    def link_disconnected(self, reason: str, attempt: int) -> None:
        self.post_message(EngineDisconnected(reason, attempt))

    def link_status(self, status: p.Status) -> None:
        self.post_message(StatusUpdated(status))

    def link_stats(self, stats: p.Stats) -> None:
        self.post_message(StatsUpdated(stats))

    def link_inflight(self, inflight: p.Inflight) -> None:
        self.post_message(InflightUpdated(inflight))

    def link_events(self, batch: p.EventBatch) -> None:
        # Straight into the bounded feed; only the redraw is deferred (and coalesced).
        if self.feed.extend(batch.events, batch.dropped):
            self.post_message(FeedChanged())

    # -- messages -> state -> signal -------------------------------------------------------------

    def on_engine_connected(self, message: EngineConnected) -> None:
        state = self.state
        if not message.same_engine:
            state.forget_rates()
            if state.ever_connected:
                self.feed.clear()
        state.connected = state.ever_connected = True
        state.reason, state.attempt = "", 0
        state.status, state.config = message.status, message.config
        self._drop_disconnected_screen()
        for topic in ("connection", "status", "config", "events"):
            self.changed.publish(topic)

    def on_engine_disconnected(self, message: EngineDisconnected) -> None:
        state = self.state
        state.connected = False
        reason = message.reason.split("; start it with", 1)[0]
        state.reason = reason.replace(f" on {state.socket_path}", "")  # the screen shows the path once
        state.attempt = message.attempt
        state.inflight = p.Inflight()
        if not any(isinstance(screen, DisconnectedScreen) for screen in self.screen_stack):
            self.push_screen(DisconnectedScreen())
        self.changed.publish("connection")
        self.changed.publish("inflight")

    def _drop_disconnected_screen(self) -> None:
        stack = self.screen_stack
        if not any(isinstance(screen, DisconnectedScreen) for screen in stack):
            return
        # Anything opened on top of it (help, palette) goes with it.
        while isinstance(self.screen, Screen) and not isinstance(self.screen, DisconnectedScreen):
            self.pop_screen()
        self.pop_screen()

    def on_status_updated(self, message: StatusUpdated) -> None:
        self.state.status = message.status
        self.changed.publish("status")

    def on_stats_updated(self, message: StatsUpdated) -> None:
        self.state.take_stats(message.stats)
        self.changed.publish("stats")

    def on_inflight_updated(self, message: InflightUpdated) -> None:
        self.state.inflight = message.inflight
        self.changed.publish("inflight")

    def on_config_updated(self, message: ConfigUpdated) -> None:
        self.state.config = message.config
        self.changed.publish("config")

    def on_feed_changed(self, _message: FeedChanged) -> None:
        self.changed.publish("events")

    @work(exclusive=True, group="config")
    async def refresh_config(self) -> None:
        try:
            config = await self.link.client.config()
        except (ControlError, EngineUnavailable, NotConnected):
            return  # the link notices a lost engine by itself
        self.post_message(ConfigUpdated(config))

    # -- navigation and commands -------------------------------------------------------------------

    def _open(self, screen_type: type[Screen[None]]) -> None:
        if isinstance(self.screen, screen_type):
            return
        if not isinstance(self.screen, DashboardScreen):
            self.pop_screen()
        self.push_screen(screen_type())

    def action_registries(self) -> None:
        self._open(RegistriesScreen)

    def action_cache(self) -> None:
        self._open(CacheScreen)

    def action_env(self) -> None:
        self._open(EnvScreen)

    def action_access(self) -> None:
        self._open(AccessScreen)

    def action_add_registry(self) -> None:
        self._open(RegistriesScreen)
        self.push_screen(RegistryForm(), self._after_form)

    def action_set_credential(self) -> None:
        self._open(RegistriesScreen)
        self.push_screen(CredentialForm(), self._after_form)

    def _after_form(self, change: p.ConfigChange | None) -> None:
        if change is not None:
            self.notify(change.message, title="saved")
            self.refresh_config()

    def help_sections(self) -> list[Section]:
        return [
            ("Everywhere", self.BINDINGS),
            ("Dashboard", DashboardScreen.BINDINGS),
            ("Registries editor", RegistriesScreen.BINDINGS),
            ("Registry / credential form", RegistryForm.BINDINGS),
            ("Access: users, tokens, rules", AccessScreen.BINDINGS),
            ("User form", UserForm.BINDINGS),
            ("Token form", TokenForm.BINDINGS),
            ("Rule form", RuleForm.BINDINGS),
            ("New token (shown once)", TokenShown.BINDINGS),
            ("Cache", CacheScreen.BINDINGS),
            ("Environment variables", EnvScreen.BINDINGS),
            ("Confirm", ConfirmScreen.BINDINGS),
            ("Engine not running", DisconnectedScreen.BINDINGS),
            ("Help", HelpScreen.BINDINGS),
        ]

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_sections()))

    def action_pause(self) -> None:
        if isinstance(self.screen, DashboardScreen):
            self.screen.action_pause()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Registries: open the editor", "List, add, edit and remove registries", self.action_registries
        )
        yield SystemCommand(
            "Registries: add a registry", "Open the form for a new registry", self.action_add_registry
        )
        yield SystemCommand(
            "Credentials: set a credential",
            "Username and password for a host or prefix",
            self.action_set_credential,
        )
        yield SystemCommand(
            "Access: users, tokens and rules",
            "Add or remove users, issue or revoke robot tokens, add, move or remove ACL rules",
            self.action_access,
        )
        yield SystemCommand("Cache: cached images", "Purge or pin images", self.action_cache)
        yield SystemCommand(
            "Environment variables", "The configuration as docker run -e lines", self.action_env
        )
        yield SystemCommand("Stream: pause or resume", "Freeze the request table", self.action_pause)
        yield SystemCommand("Help: key bindings", "Every key of every screen", self.action_help)
        yield from super().get_system_commands(screen)
