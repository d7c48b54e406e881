"""`?`: every key of every screen, read from the screens' own BINDINGS (so the list cannot go stale).

docs/dashboard.md's key table lists the same sections; tests/tui/test_keys.py checks the two agree both ways.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from amltui.tui.screens.dialog import Dialog

KEY_LABELS = {"enter": "Enter", "slash": "/", "escape": "Esc", "space": "Space", "home": "Home", "end": "End",
              "question_mark": "?", "backspace": "Backspace", "tab": "Tab", "pageup": "PgUp", "pagedown": "PgDn",
              "left": "←", "right": "→"}


# A screen's title and its rows: (key labels, description, action). The dashboard lists every screen
# (amltui/tui/dashboard.py help_sections): it is the one module that knows them all.
Section = tuple[str, list[tuple[list[str], str, str]]]


def key_label(key: str) -> str:
    """How docs/dashboard.md and the help screen write a Textual key name: ``question_mark`` → ``?``, ``ctrl+s`` →
    ``Ctrl+S``."""
    key = key.strip()
    if key.startswith("ctrl+"):
        return "Ctrl+" + key_label(key[5:]).upper()
    return KEY_LABELS.get(key, key)


def binding_rows(*owners: type) -> list[tuple[list[str], str, str]]:
    """(key labels, description, action) of each binding the classes declare themselves (not inherited ones)."""
    rows = []
    for owner in owners:
        for binding in owner.__dict__.get("BINDINGS", []):
            binding = _as_binding(binding)
            # the tooltip is the longer text where the footer's description is one word
            text = binding.tooltip or binding.description or binding.action
            rows.append(([key_label(k) for k in binding.key.split(",")], text, binding.action))
    return rows


def _as_binding(binding: BindingType) -> Binding:
    return binding if isinstance(binding, Binding) else Binding(*binding)


def help_table(sections: list[Section]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for n, (title, rows) in enumerate(sections):
        if n:
            table.add_row("", "")
        table.add_row(Text(title, style="bold underline"), "")
        for keys, description, _ in rows:
            table.add_row(Text(" / ".join(keys), style="bold cyan"), Text(description))
    return table


class HelpScreen(Dialog[None]):
    DEFAULT_CSS = """
    HelpScreen {
        #dialog {
            height: 100%;
        }

        #help-keys {
            height: 1fr;
        }
    }
    """
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("[b]Keys[/b] (↑/↓ scroll; Esc closes)", id="help-title")
            with VerticalScroll(id="help-keys"):
                yield Static(help_table(self.sections))

    def on_mount(self) -> None:
        self.query_one("#help-keys").focus()

    def action_close(self) -> None:
        self.dismiss(None)
