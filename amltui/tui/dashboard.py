"""The dashboard application: the runs screen first; the others are pushed from it.

Everything it imports at start is torch-free (tests/app/test_torch_boundary.py): a run's science loads in its worker
process, never here.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from amltui.tui.data import RunsReader
from amltui.tui.screens.runs import RunsScreen


class DashboardApp(App[None]):
    CSS_PATH = "dashboard.tcss"
    TITLE = "amltui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(self, runs_dir: Path, *, poll_interval: float = 0.5, detail_interval: float = 1.0) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.poll_interval = poll_interval
        self.detail_interval = detail_interval
        self.reader = RunsReader(self.runs_dir)

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
