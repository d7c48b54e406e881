"""The sort picker: a small modal listing the runs table's sort keys; Enter picks one, Escape keeps the sort."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from amltui.tui.data import SORT_LABELS
from amltui.tui.screens.dialog import Dialog


class SortPicker(Dialog[str | None]):
    """Dismisses with the chosen sort key (amltui.tui.data.SORTS), or None when closed with Escape."""

    DEFAULT_CSS = """
    SortPicker {
        #dialog {
            width: 50;
        }

        #sort-keys {
            height: auto;
            max-height: 16;
            border: none;
            padding: 0;
        }
    }
    """
    BINDINGS = [Binding("escape,s", "dismiss_picker", "Close")]

    def __init__(self, current: str, reverse: bool = False) -> None:
        super().__init__()
        self.current = current
        self.reverse = reverse

    def compose(self) -> ComposeResult:
        arrow = "↓" if self.reverse else "↑"
        with Vertical(id="dialog"):
            yield Static(f"[b]Sort runs by[/b] (now {self.current}{arrow}; S reverses)", id="sort-title")
            options = [Option(Text.assemble((f"{key:<12}", "bold"), label), id=key)
                       for key, label in SORT_LABELS.items()]
            yield OptionList(*options, id="sort-keys", compact=True)

    def on_mount(self) -> None:
        # Opened as the app quits (`q` then `s` typed quickly), the dialog is mounted but never composed: no list.
        keys = next(iter(self.query(OptionList)), None)
        if keys is None:
            return
        keys.highlighted = list(SORT_LABELS).index(self.current) if self.current in SORT_LABELS else 0
        keys.focus()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_picker(self) -> None:
        self.dismiss(None)
