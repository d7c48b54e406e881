"""Key bindings several screens share: back to the previous screen, and numbered tabs."""

from __future__ import annotations

from textual.binding import Binding

BACK = Binding("escape,backspace", "app.pop_screen", "Back")


def tab_keys(*tabs: tuple[str, str]) -> list[Binding]:
    """`1`…`n` switch to the tabs given as (pane id, title), in order (the screen defines ``action_tab``)."""
    return [Binding(str(i), f"tab('{pane}')", title) for i, (pane, title) in enumerate(tabs, 1)]
