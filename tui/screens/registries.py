"""The registries and credentials editor: list, add, edit, remove; set or remove credentials.

Every change goes to the engine, which edits the TOML file with its comments kept and applies it live;
this screen then shows the engine's new configuration.  Passwords are never shown: the engine only
ever sends them back masked, and this screen does not even draw the mask's column content from input.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from appliance import protocol as p
from appliance.control.client import ControlClient
from tui import format as fmt
from tui.calls import call_engine
from tui.screens.confirm import ConfirmScreen
from tui.screens.forms import CredentialForm, RegistryForm
from tui.state import holder
from tui.widgets.status_header import StatusHeader


def _tristate(value: bool | None, yes: str, no: str) -> str:
    return "default" if value is None else (yes if value else no)


def registry_cells(view: p.RegistryView) -> tuple[str | Text, ...]:
    tls = "insecure" if view.insecure else ("custom CA" if view.ca_file else "verified")
    return (
        Text(view.host, style="bold"),
        fmt.cut(", ".join(view.aliases), 28) or "-",
        view.scheme,
        Text(tls, style="red" if view.insecure else ""),
        _tristate(view.allow_push, "allowed", "blocked"),
        _tristate(view.manifest_cache, "on", "off"),
        fmt.seconds_setting(view.tag_ttl) or "default",
    )


def credential_cells(view: p.CredentialView) -> tuple[str | Text, ...]:
    return (
        Text(view.scope, style="bold"),
        view.username,
        view.store,
        fmt.cut(view.reference or "-", 40),
        Text(p.MASK, style="dim"),  # whatever the engine sent, only the mask is drawn
    )


class RegistriesScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "add_registry", "Add registry"),
        Binding("enter", "edit", "Edit", show=False),
        Binding("e", "edit", "Edit"),
        Binding("d,delete", "remove", "Remove"),
        Binding("k", "set_credential", "Set credential"),
        Binding("tab", "app.focus_next", "Next table", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        with Vertical(id="editor"):
            yield Static(id="config-file")
            with Vertical(id="registries-box"):
                yield DataTable(id="registries", cursor_type="row", zebra_stripes=True)
            with Vertical(id="credentials-box"):
                yield DataTable(id="credentials", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        registries = self.query_one("#registries", DataTable)
        for label in ("Host", "Aliases", "Scheme", "TLS", "Push", "Tag cache", "Tag TTL"):
            registries.add_column(label, key=label.lower())
        credentials = self.query_one("#credentials", DataTable)
        for label in ("Scope", "Username", "Store", "Reference", "Password"):
            credentials.add_column(label, key=label.lower())
        self.query_one("#registries-box").border_title = "Registries  (a add · e edit · d remove)"
        self.query_one("#credentials-box").border_title = "Credentials  (k set · d remove)"
        holder(self).changed.subscribe(self, self._changed)
        self._redraw()
        registries.focus()

    def _changed(self, topic: str) -> None:
        if topic == "config":
            self._redraw()

    def _redraw(self) -> None:
        config = holder(self).state.config
        registries = self.query_one("#registries", DataTable)
        credentials = self.query_one("#credentials", DataTable)
        keep_registry, keep_credential = registries.cursor_row, credentials.cursor_row
        registries.clear()
        credentials.clear()
        if config is None:
            self.query_one("#config-file", Static).update(Text("waiting for the engine…", style="dim"))
            return
        where = Text()
        where.append("config file ", style="dim")
        where.append(config.config_path or "(none)", style="bold")
        if not config.editable:
            where.append("  read-only: the engine was started without a file to edit", style="yellow")
        self.query_one("#config-file", Static).update(where)
        for view in config.registries:
            registries.add_row(*registry_cells(view), key=view.host)
        for cred in config.credentials:
            credentials.add_row(*credential_cells(cred), key=cred.scope)
        registries.move_cursor(row=min(keep_registry, max(0, registries.row_count - 1)))
        credentials.move_cursor(row=min(keep_credential, max(0, credentials.row_count - 1)))

    # -- selection -----------------------------------------------------------------------------

    def _selected_registry(self) -> p.RegistryView | None:
        config = holder(self).state.config
        table = self.query_one("#registries", DataTable)
        if config is None or not config.registries or not (0 <= table.cursor_row < len(config.registries)):
            return None
        return config.registries[table.cursor_row]

    def _selected_credential(self) -> p.CredentialView | None:
        config = holder(self).state.config
        table = self.query_one("#credentials", DataTable)
        if config is None or not config.credentials or not (0 <= table.cursor_row < len(config.credentials)):
            return None
        return config.credentials[table.cursor_row]

    def _credentials_focused(self) -> bool:
        return self.focused is self.query_one("#credentials", DataTable)

    # -- actions -------------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_edit()

    def action_add_registry(self) -> None:
        self.app.push_screen(RegistryForm(), self._saved)

    def action_edit(self) -> None:
        if self._credentials_focused():
            cred = self._selected_credential()
            if cred is not None:
                self.app.push_screen(CredentialForm(cred.scope, cred.username), self._saved)
            return
        view = self._selected_registry()
        if view is not None:
            self.app.push_screen(RegistryForm(view), self._saved)

    def action_set_credential(self) -> None:
        view = self._selected_registry()
        self.app.push_screen(CredentialForm(view.host if view else ""), self._saved)

    def action_remove(self) -> None:
        if self._credentials_focused():
            cred = self._selected_credential()
            if cred is None:
                return
            scope = cred.scope

            def remove_credential(yes: bool | None) -> None:
                if yes:
                    self._run(lambda client: client.remove_credential(scope), f"credential {scope} removed")

            self.app.push_screen(
                ConfirmScreen(
                    f"Remove the credential for {scope}?", "Its password is deleted from its store.", "Remove"
                ),
                remove_credential,
            )
            return
        view = self._selected_registry()
        if view is None:
            return
        host = view.host

        def remove_registry(yes: bool | None) -> None:
            if yes:
                self._run(lambda client: client.remove_registry(host), f"registry {host} removed")

        self.app.push_screen(
            ConfirmScreen(
                f"Remove the registry {host}?", "Its cached content stays until evicted or purged.", "Remove"
            ),
            remove_registry,
        )

    def _saved(self, change: p.ConfigChange | None) -> None:
        if change is not None:
            report(self, change)
            refresh_config(self)

    @work(group="editor")
    async def _run(self, call: Callable[[ControlClient], Awaitable[p.ConfigChange]], done: str) -> None:
        change = await call_engine(self, call)
        if change is None:
            return
        report(self, change, done)
        refresh_config(self)


def report(screen: Screen[Any], change: p.ConfigChange, headline: str = "") -> None:
    lines = [headline or change.message]
    lines += change.warnings
    if change.restart_required:
        lines.append("restart needed for: " + ", ".join(change.restart_required))
    severity: SeverityLevel = "warning" if change.warnings or change.restart_required else "information"
    screen.notify(
        "\n".join(lines), title="saved" if change.applied else "saved (not applied)", severity=severity
    )


def refresh_config(screen: Screen[Any]) -> None:
    app: Any = screen.app
    app.refresh_config()
