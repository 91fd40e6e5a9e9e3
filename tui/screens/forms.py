"""The registry and credential forms.  Saves go to the engine through the control socket.

The engine validates the whole resulting file before writing; a refusal comes back with the key at
fault and is shown under that field (the file is untouched).  The password field is masked, never
pre-filled, and emptied as soon as the save is answered.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from appliance import protocol as p
from appliance.control.client import ControlError, EngineUnavailable
from tui.connection import NotConnected
from tui.forms_model import (
    CREDENTIAL_FIELDS,
    REGISTRY_FIELDS,
    TRISTATE,
    FormError,
    RegistryFormValues,
    credential_edit,
    field_for,
    registry_edit,
)
from tui.state import holder


def field_group(label: str, widget: Any, name: str, hint: str = "") -> ComposeResult:
    yield Label(label, classes="field-label")
    yield widget
    if hint:
        yield Static(hint, classes="field-hint")
    yield Static("", id=f"error-{name}", classes="field-error")


class EngineForm(ModalScreen[p.ConfigChange | None]):
    """Shared plumbing: inline errors, save/cancel keys, the engine call in a worker."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]
    FIELDS: tuple[str, ...] = ()

    def _buttons(self) -> ComposeResult:
        yield Static("", id="error-form", classes="field-error")
        with Horizontal(classes="buttons"):
            yield Button("Save (ctrl+s)", variant="primary", id="save")
            yield Button("Cancel (esc)", id="cancel")

    def clear_errors(self) -> None:
        for error in self.query(".field-error"):
            assert isinstance(error, Static)
            error.update("")
            error.remove_class("-shown")

    def show_error(self, field: str | None, message: str) -> None:
        target = f"error-{field}" if field in self.FIELDS else "error-form"
        error = self.query_one(f"#{target}", Static)
        error.update(Text(f"✗ {message}", style="bold"))
        error.add_class("-shown")
        error.scroll_visible()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        raise NotImplementedError

    async def _submit(self, call: Any) -> p.ConfigChange | None:
        """Run one edit; refusals land inline and return None."""
        self.clear_errors()
        try:
            change: p.ConfigChange = await call(holder(self).link.client)
        except ControlError as exc:
            where = exc.body.where
            field = field_for(where, self.FIELDS)
            self.show_error(field, exc.body.message if field else str(exc))
            return None
        except (EngineUnavailable, NotConnected) as exc:
            self.show_error(None, f"not saved: {exc}")
            return None
        return change


class RegistryForm(EngineForm):
    FIELDS = REGISTRY_FIELDS

    def __init__(self, existing: p.RegistryView | None = None) -> None:
        super().__init__()
        self.existing = existing
        self.values = RegistryFormValues.from_view(existing) if existing else RegistryFormValues()

    def compose(self) -> ComposeResult:
        v = self.values
        title = f"Edit registry {self.existing.host}" if self.existing else "Add a registry"
        with VerticalScroll(id="form", classes="dialog"):
            yield Static(title, classes="dialog-title")
            host = Input(v.host, placeholder="registry.example.com or host:5000", id="host")
            host.disabled = self.existing is not None
            yield from field_group(
                "Host", host, "host", "cannot be renamed later" if not self.existing else ""
            )
            yield from field_group(
                "Aliases",
                Input(v.aliases, placeholder="other names, comma separated", id="aliases"),
                "aliases",
            )
            yield from field_group(
                "Auth hosts",
                Input(v.auth_hosts, placeholder="token realms to send credentials to", id="auth_hosts"),
                "auth_hosts",
            )
            yield from field_group(
                "Scheme",
                Select(
                    [("https", "https"), ("http", "http")], value=v.scheme, allow_blank=False, id="scheme"
                ),
                "scheme",
            )
            yield from field_group(
                "TLS",
                Checkbox("Do not verify the upstream certificate (insecure)", v.insecure, id="insecure"),
                "insecure",
            )
            yield from field_group(
                "CA file",
                Input(v.ca_file, placeholder="PEM bundle for this registry", id="ca_file"),
                "ca_file",
            )
            yield from field_group(
                "Push",
                Select([(t, t) for t in TRISTATE], value=v.allow_push, allow_blank=False, id="allow_push"),
                "allow_push",
                "default: the global allow_push",
            )
            yield from field_group(
                "Cache tags",
                Select(
                    [(t, t) for t in TRISTATE], value=v.manifest_cache, allow_blank=False, id="manifest_cache"
                ),
                "manifest_cache",
            )
            yield from field_group(
                "Tag TTL", Input(v.tag_ttl, placeholder="e.g. 10m, 1h30m, 60d", id="tag_ttl"), "tag_ttl"
            )
            yield from self._buttons()

    def on_mount(self) -> None:
        first = "#aliases" if self.existing else "#host"
        self.query_one(first, Input).focus()

    def read(self) -> RegistryFormValues:
        def text(name: str) -> str:
            return self.query_one(f"#{name}", Input).value

        def choice(name: str) -> str:
            value = self.query_one(f"#{name}", Select).value
            return str(value)

        return RegistryFormValues(
            host=text("host"),
            aliases=text("aliases"),
            auth_hosts=text("auth_hosts"),
            scheme=choice("scheme"),
            insecure=self.query_one("#insecure", Checkbox).value,
            ca_file=text("ca_file"),
            allow_push=choice("allow_push"),
            manifest_cache=choice("manifest_cache"),
            tag_ttl=text("tag_ttl"),
        )

    def action_save(self) -> None:
        self.clear_errors()
        try:
            edit = registry_edit(self.read(), adding=self.existing is None)
        except FormError as exc:
            self.show_error(exc.field, exc.message)
            return
        self._save(edit)

    @work(exclusive=True, group="form-save")
    async def _save(self, edit: p.RegistryEdit) -> None:
        existing = self.existing
        if existing is None:
            change = await self._submit(lambda client: client.add_registry(edit.values))
        else:
            change = await self._submit(
                lambda client: client.update_registry(existing.host, edit.values, edit.unset)
            )
        if change is not None:
            self.dismiss(change)


STORES = (
    ("in the TOML file", p.SecretStoreName.TOML.value),
    ("OS keyring", p.SecretStoreName.KEYRING.value),
    ("a password file", p.SecretStoreName.FILE.value),
)


class CredentialForm(EngineForm):
    FIELDS = CREDENTIAL_FIELDS

    def __init__(self, scope: str = "", username: str = "") -> None:
        super().__init__()
        self.scope = scope
        self.username = username

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="form", classes="dialog"):
            yield Static("Set a credential", classes="dialog-title")
            yield from field_group(
                "Scope",
                Input(self.scope, placeholder="host[:port] or host/repository/prefix", id="scope"),
                "scope",
            )
            yield from field_group("Username", Input(self.username, id="username"), "username")
            yield from field_group(
                "Password",
                Input(password=True, placeholder="never shown, never sent back", id="password"),
                "password",
            )
            yield from field_group(
                "Store",
                Select(STORES, value=p.SecretStoreName.TOML.value, allow_blank=False, id="store"),
                "store",
            )
            yield from field_group(
                "Password file",
                Input(placeholder="path of a file holding the password", id="reference"),
                "reference",
                "only for the file store",
            )
            yield from self._buttons()

    def on_mount(self) -> None:
        self.query_one("#username" if self.scope else "#scope", Input).focus()
        self._store_changed()

    @on(Select.Changed, "#store")
    def _store_changed(self) -> None:
        is_file = self.query_one("#store", Select).value == p.SecretStoreName.FILE.value
        self.query_one("#reference", Input).disabled = not is_file
        self.query_one("#password", Input).disabled = is_file

    def action_save(self) -> None:
        self.clear_errors()
        password = self.query_one("#password", Input)
        try:
            edit = credential_edit(
                self.query_one("#scope", Input).value,
                self.query_one("#username", Input).value,
                password.value,
                str(self.query_one("#store", Select).value),
                self.query_one("#reference", Input).value,
            )
        except FormError as exc:
            self.show_error(exc.field, exc.message)
            return
        self._save(edit)

    @work(exclusive=True, group="form-save")
    async def _save(self, edit: p.CredentialEdit) -> None:
        change = await self._submit(lambda client: client.set_credential(edit))
        if change is not None:
            # The secret leaves the widget tree now, not whenever the screen is collected.
            self.query_one("#password", Input).value = ""
            self.dismiss(change)
