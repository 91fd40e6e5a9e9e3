"""Every key binding of every screen, generated from the ``BINDINGS`` themselves so it cannot drift."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

Section = tuple[str, Sequence[BindingType]]


def binding_rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for binding in bindings:
        if isinstance(binding, Binding):
            keys, description, action = binding.key, binding.description, binding.action
        else:
            keys, action, description = binding[0], binding[1], binding[2] if len(binding) > 2 else ""
        shown = " / ".join(_key_label(k.strip()) for k in keys.split(","))
        rows.append((shown, description or action.replace("_", " ")))
    return rows


def _key_label(key: str) -> str:
    return {
        "slash": "/",
        "question_mark": "?",
        "space": "space",
        "delete": "del",
        "left_square_bracket": "[",
        "right_square_bracket": "]",
    }.get(key, key)


def help_table(sections: Sequence[Section]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold cyan", no_wrap=True)
    table.add_column()
    for title, bindings in sections:
        table.add_row(Text(title, style="bold underline"), "")
        for keys, description in binding_rows(bindings):
            table.add_row(keys, description)
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close help")]

    def __init__(self, sections: Sequence[Section]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Static(help_table(self.sections), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "Keys  (esc closes)"
