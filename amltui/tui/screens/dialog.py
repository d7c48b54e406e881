"""The frame every modal of the dashboard shares: a bordered box in the middle of the screen, buttons bottom right.

Its look travels with the class (DEFAULT_CSS), not with the app's stylesheet, so a modal works in any Textual app.
"""

from __future__ import annotations

from typing import TypeVar

from textual.screen import ModalScreen

ResultType = TypeVar("ResultType")


class Dialog(ModalScreen[ResultType]):
    """Compose the box as ``Vertical(id="dialog")`` and the buttons in ``Horizontal(classes="buttons")``."""

    DEFAULT_CSS = """
    Dialog {
        align: center middle;

        #dialog {
            width: 76;
            max-width: 100%;
            height: auto;
            max-height: 100%;
            border: thick $primary;
            background: $surface;
            padding: 0 1;
        }

        .buttons {
            height: 1;
            align-horizontal: right;
            margin-top: 1;
        }

        .buttons Button {
            margin-left: 2;
        }
    }
    """
