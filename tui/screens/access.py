"""The access editor: users, groups, robot tokens and the ACL rules in order; add, remove, move.

Everything goes through the control socket's ``/v1/access`` endpoints, as ``appliance user|token|acl``
does: the engine edits the TOML file (comments kept), validates it whole and applies it at once.  The
screen re-reads the view after every change and every few seconds (a token's last use moves).  It
never receives a hash or a secret to draw: the view carries names, ids and dates only, and a new
token's secret exists in this process only while its one-time modal is open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from appliance import protocol as p
from appliance.control.client import ControlClient
from appliance.protocol import access as pa
from tui.access_model import date, group_row, rule_row, summary, token_row, user_row
from tui.calls import call_engine
from tui.screens.access_forms import RuleForm, TokenForm, TokenShown, UserForm
from tui.screens.confirm import ConfirmScreen
from tui.screens.registries import report
from tui.state import holder
from tui.widgets.status_header import StatusHeader

REFRESH_SECONDS = 5.0
TABLES = {
    "users": ("Name", "Groups", "Password in"),
    "groups": ("Group", "Members"),
    "tokens": ("Token", "Acts as", "Created (UTC)", "Expires (UTC)", "Last used (UTC)"),
    "rules": ("#", "Effect", "Who", "Actions", "Registry", "Repository"),
}
TITLES = {
    "users": "Users  (u add · p password · d remove)",
    "groups": "Groups  (u adds a user to groups)",
    "tokens": "Robot tokens  (t issue · d revoke)",
    "rules": "ACL rules, first match decides  (n add · [ ] move · d remove)",
}


class AccessScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("u", "add_user", "Add user"),
        Binding("p", "password", "Password"),
        Binding("t", "issue_token", "Issue token"),
        Binding("n", "add_rule", "Add rule"),
        Binding("left_square_bracket", "move(-1)", "Rule up"),
        Binding("right_square_bracket", "move(1)", "Rule down"),
        Binding("d,delete", "remove", "Remove"),
        Binding("tab", "app.focus_next", "Next table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view: pa.AccessView | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        with Vertical(id="access-editor"):
            yield Static(Text("asking the engine…", style="dim"), id="access-summary")
            with Horizontal(id="access-top"):
                for name in ("users", "groups"):
                    with Vertical(id=f"{name}-box", classes="access-box"):
                        yield DataTable(id=name, cursor_type="row", zebra_stripes=True)
            for name in ("tokens", "rules"):
                with Vertical(id=f"{name}-box", classes="access-box"):
                    yield DataTable(id=name, cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        for name, labels in TABLES.items():
            table = self.query_one(f"#{name}", DataTable)
            for label in labels:
                table.add_column(label)
            self.query_one(f"#{name}-box").border_title = TITLES[name]
        holder(self).changed.subscribe(self, self._changed)
        self.set_interval(REFRESH_SECONDS, self.reload)
        self.reload()
        self.query_one("#users", DataTable).focus()

    def _changed(self, topic: str) -> None:
        if topic in ("connection", "config"):
            self.reload()

    @work(exclusive=True, group="access-view")
    async def reload(self) -> None:
        if not holder(self).state.connected:
            return
        view = await call_engine(self, lambda client: client.access())
        if view is not None:
            self.show(view)

    def show(self, view: pa.AccessView) -> None:
        self.view = view
        self.query_one("#access-summary", Static).update(
            Text(summary(view), style="bold" if view.enabled else "yellow")
        )
        rows: dict[str, list[tuple[str, ...]]] = {
            "users": [user_row(u) for u in view.users],
            "groups": [group_row(g) for g in view.groups],
            "tokens": [token_row(t) for t in view.tokens],
            "rules": [rule_row(r) for r in view.acl],
        }
        for name, cells in rows.items():
            table = self.query_one(f"#{name}", DataTable)
            keep = table.cursor_row
            table.clear()
            for row in cells:
                table.add_row(*row)
            if cells:
                table.move_cursor(row=min(keep, len(cells) - 1), animate=False)

    # -- selection ---------------------------------------------------------------------------------

    def _focused(self) -> str:
        focused = self.focused
        return (focused.id or "") if isinstance(focused, DataTable) else ""

    def _selected(self, name: str) -> int | None:
        table = self.query_one(f"#{name}", DataTable)
        return table.cursor_row if table.row_count and 0 <= table.cursor_row < table.row_count else None

    def _user(self) -> pa.UserView | None:
        index = self._selected("users")
        return self.view.users[index] if self.view is not None and index is not None else None

    def _token(self) -> pa.TokenView | None:
        index = self._selected("tokens")
        return self.view.tokens[index] if self.view is not None and index is not None else None

    def _rule(self) -> pa.RuleView | None:
        index = self._selected("rules")
        return self.view.acl[index] if self.view is not None and index is not None else None

    # -- actions -----------------------------------------------------------------------------------

    def action_add_user(self) -> None:
        self.app.push_screen(UserForm(), self._saved)

    def action_password(self) -> None:
        user = self._user()
        if user is None:
            return
        if user.source != "config":
            self.notify(f"{user.name}'s password lives in {user.source}: change it there", severity="warning")
            return
        self.app.push_screen(UserForm(user.name), self._saved)

    def action_issue_token(self) -> None:
        user = self._user() if self._focused() == "users" else None
        token = self._token() if self._focused() == "tokens" else None
        name = user.name if user else (token.name if token else "")
        self.app.push_screen(TokenForm(name), self._issue)

    def action_add_rule(self) -> None:
        groups = [g.name for g in self.view.groups] if self.view else []
        rule = self._rule() if self._focused() == "rules" else None
        self.app.push_screen(RuleForm(groups, rule.index if rule else None), self._saved)

    def action_move(self, step: int) -> None:
        rule = self._rule()
        if rule is None or self.view is None or self._focused() != "rules":
            return
        target = rule.index + step
        if not 0 <= target < len(self.view.acl):
            return
        self._run(lambda client: client.move_rule(rule.index, target), f"rule {rule.index} moved to {target}")
        self.query_one("#rules", DataTable).move_cursor(row=target, animate=False)

    def action_remove(self) -> None:
        focused = self._focused()
        if focused == "users" and (user := self._user()) is not None:
            name = user.name
            self._confirm(
                f"Remove the user {name}?",
                "Their cached verdicts go at once; rules naming them stay.",
                lambda client: client.remove_user(name),
                f"user {name} removed",
            )
        elif focused == "tokens" and (token := self._token()) is not None:
            token_id = token.id
            self._confirm(
                f"Revoke the token rat_{token_id}_… of {token.name}?",
                "Whatever uses it is refused from now on.",
                lambda client: client.remove_token(token_id),
                f"token {token_id} revoked",
            )
        elif focused == "rules" and (rule := self._rule()) is not None:
            index = rule.index
            self._confirm(
                f"Remove rule {index} ({rule.effect} {rule.who} {','.join(rule.actions)})?",
                "The rules after it move up one place.",
                lambda client: client.remove_rule(index),
                f"rule {index} removed",
            )

    def _confirm(
        self,
        question: str,
        detail: str,
        call: Callable[[ControlClient], Awaitable[p.ConfigChange]],
        done: str,
    ) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._run(call, done)

        self.app.push_screen(ConfirmScreen(question, detail, "Remove"), answered)

    # -- engine calls ------------------------------------------------------------------------------

    def _saved(self, change: p.ConfigChange | None) -> None:
        if change is not None:
            report(self, change)
            self.reload()

    def _issue(self, made: tuple[pa.TokenEdit, str] | None) -> None:
        if made is not None:
            self._create_token(*made)

    @work(group="access-edit")
    async def _create_token(self, edit: pa.TokenEdit, secret: str) -> None:
        change = await call_engine(self, lambda client: client.add_token(edit))
        if change is None:
            return  # refused (notified): the secret was never stored, so it is simply dropped
        report(self, change)
        self.reload()
        # Accepted means written: the token works now (or once the engine applies the file), so
        # this is the one moment its secret can be shown.
        self.app.push_screen(TokenShown(secret, edit.name, date(edit.expires, "never")))

    @work(group="access-edit")
    async def _run(self, call: Callable[[ControlClient], Awaitable[p.ConfigChange]], done: str) -> None:
        change = await call_engine(self, call)
        if change is not None:
            report(self, change, done)
            self.reload()

    @on(DataTable.RowSelected, "#users")
    def _user_chosen(self) -> None:
        self.action_password()
