"""The access editor's forms: a user (add, or a new password), a robot token, an ACL rule; and the one
modal that shows a new token's secret, once.

Each form checks its input with the CLI's checks (``tui.access_model``) and shows a refusal under
the field at fault; then the engine checks the whole file again and a refusal of its own lands the
same way.  Passwords are typed in masked fields, hashed in a thread (scrypt is slow by design) and
the fields are emptied once the engine has answered, whether it saved or refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static

from appliance.protocol import access as pa
from tui.access_model import (
    DEFAULT_TOKEN_LIFE,
    RULE_FIELDS,
    USER_FIELDS,
    NewUser,
    check_user,
    rule_edit,
    token_edit,
)
from tui.forms_model import FormError
from tui.screens.forms import EngineForm, field_group


class UserForm(EngineForm):
    """Add a user (``existing`` None), or set a new password for ``existing``."""

    FIELDS = USER_FIELDS

    def __init__(self, existing: str | None = None) -> None:
        super().__init__()
        self.existing = existing

    def compose(self) -> ComposeResult:
        title = f"New password for {self.existing}" if self.existing else "Add a user"
        with VerticalScroll(id="form", classes="dialog"):
            yield Static(title, classes="dialog-title")
            name = Input(self.existing or "", placeholder="letters, digits, . _ -", id="name")
            name.disabled = self.existing is not None
            yield from field_group("Name", name, "name")
            yield from field_group(
                "Password",
                Input(password=True, placeholder="never shown, never sent", id="password"),
                "password",
            )
            yield from field_group(
                "Again", Input(password=True, placeholder="the same password", id="again"), "again"
            )
            if self.existing is None:
                yield from field_group(
                    "Groups",
                    Input(placeholder="groups to join, comma separated (made if new)", id="groups"),
                    "groups",
                )
            yield from self._buttons()

    def on_mount(self) -> None:
        self.query_one("#password" if self.existing else "#name", Input).focus()

    def _forget_passwords(self) -> None:
        for selector in ("#password", "#again"):
            self.query_one(selector, Input).value = ""

    def action_save(self) -> None:
        self.clear_errors()
        groups = self.query(Input).filter("#groups")
        try:
            user = check_user(
                self.query_one("#name", Input).value,
                self.query_one("#password", Input).value,
                self.query_one("#again", Input).value,
                groups.first().value if groups else "",
                new=self.existing is None,
            )
        except FormError as exc:
            self.show_error(exc.field, exc.message)
            return
        self._save(user)

    @work(exclusive=True, group="form-save")
    async def _save(self, user: NewUser) -> None:
        self.query_one("#save", Button).disabled = True
        try:
            edit = await asyncio.to_thread(user.edit)  # scrypt: tens of ms and 32 MiB, off the loop
            if self.existing is None:
                change = await self._submit(lambda client: client.add_user(edit))
            else:
                change = await self._submit(lambda client: client.set_password(edit))
        finally:
            self._forget_passwords()
            self.query_one("#save", Button).disabled = False
        if change is not None:
            self.dismiss(change)


class TokenForm(ModalScreen[tuple[pa.TokenEdit, str] | None]):
    """Issue a robot token: the form makes it and answers with the record and the secret to show once.

    The engine call is the access screen's, so the secret never waits in a form that could be
    re-opened; this form only checks and makes.
    """

    BINDINGS = [Binding("ctrl+s", "save", "Issue"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str = "") -> None:
        super().__init__()
        self.identity = name

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="form", classes="dialog"):
            yield Static("Issue a robot token", classes="dialog-title")
            yield from field_group(
                "Acts as",
                Input(self.identity, placeholder="a user's name or a robot's", id="name"),
                "name",
            )
            yield from field_group(
                "Expires",
                Input(DEFAULT_TOKEN_LIFE, placeholder="90d, 1y, a date (2027-06-30), or never", id="expires"),
                "expires",
            )
            yield Static("", id="error-form", classes="field-error")
            with Horizontal(classes="buttons"):
                yield Button("Issue (ctrl+s)", variant="primary", id="save")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def _pressed(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        for error in self.query(".field-error"):
            error.remove_class("-shown")
        try:
            edit, made = token_edit(
                self.query_one("#name", Input).value, self.query_one("#expires", Input).value, time.time()
            )
        except FormError as exc:
            error = self.query_one(f"#error-{exc.field}", Static)
            error.update(f"✗ {exc.message}")
            error.add_class("-shown")
            return
        self.dismiss((edit, made.secret))


class RuleForm(EngineForm):
    FIELDS = RULE_FIELDS

    def __init__(self, groups: Collection[str], position: int | None = None) -> None:
        super().__init__()
        self.groups = frozenset(groups)
        self.position = position

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="form", classes="dialog"):
            yield Static("Add an access rule", classes="dialog-title")
            yield from field_group(
                "Who", Input(placeholder='a name, "@group", "*" or "anonymous"', id="who"), "who"
            )
            yield from field_group(
                "Actions", Input(placeholder="pull, push, tunnel, admin", id="actions"), "actions"
            )
            yield from field_group(
                "Registry", Input("*", placeholder="a registry host, or * for any", id="registry"), "registry"
            )
            yield from field_group(
                "Repository",
                Input("**", placeholder="a glob: * within a segment, ** across", id="repository"),
                "repository",
            )
            yield from field_group(
                "Effect",
                Select([("allow", "allow"), ("deny", "deny")], value="allow", allow_blank=False, id="effect"),
                "effect",
            )
            where = "" if self.position is None else str(self.position)
            yield from field_group(
                "Position",
                Input(where, placeholder="insert before this rule number; blank: at the end", id="position"),
                "position",
                "first match decides: a deny must come before the allow it narrows",
            )
            yield from self._buttons()

    def on_mount(self) -> None:
        self.query_one("#who", Input).focus()

    def action_save(self) -> None:
        self.clear_errors()

        def text(name: str) -> str:
            return self.query_one(f"#{name}", Input).value

        try:
            edit = rule_edit(
                text("who"),
                text("actions"),
                text("registry"),
                text("repository"),
                str(self.query_one("#effect", Select).value),
                text("position"),
                self.groups,
            )
        except FormError as exc:
            self.show_error(exc.field, exc.message)
            return
        self._save(edit)

    @work(exclusive=True, group="form-save")
    async def _save(self, edit: pa.RuleEdit) -> None:
        change = await self._submit(lambda client: client.add_rule(edit))
        if change is not None:
            self.dismiss(change)


class TokenShown(ModalScreen[None]):
    """A new token's secret, on screen this once: it is stored nowhere, the engine has only its digest."""

    BINDINGS = [
        Binding("c", "copy", "Copy"),
        Binding("escape,enter", "close", "Done"),
    ]

    def __init__(self, secret: str, name: str, expires: str) -> None:
        super().__init__()
        self._secret = secret
        self.identity = name
        self.expires = expires

    def compose(self) -> ComposeResult:
        with Vertical(id="token-dialog", classes="dialog"):
            yield Static(f"Token for {self.identity} (expires {self.expires})", classes="dialog-title")
            yield Static(self._secret, id="token-secret")
            yield Static(
                "Copy it now (c copies it to the clipboard, where the terminal allows): it is shown "
                "this once and cannot be shown again. Use it as the password of any user name, or "
                "as a Bearer token.",
                id="token-hint",
            )
            with Horizontal(classes="buttons"):
                yield Button("Copy (c)", id="copy")
                yield Button("Done (esc)", variant="primary", id="done")

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self._secret)
        self.notify("copied to the clipboard", timeout=3)

    def action_close(self) -> None:
        self._secret = ""
        self.query_one("#token-secret", Static).update("")
        self.dismiss(None)

    @on(Button.Pressed, "#copy")
    def _copy(self) -> None:
        self.action_copy()

    @on(Button.Pressed, "#done")
    def _done(self) -> None:
        self.action_close()
