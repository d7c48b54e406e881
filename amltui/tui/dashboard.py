"""The dashboard application: the runs screen first; the others are pushed from it.

Everything it imports at start is torch-free (tests/app/test_torch_boundary.py): a run's science loads in its worker
process, never here.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from amltui.tui.data import RunsReader
from amltui.tui.screens.compare import CompareScreen
from amltui.tui.screens.confirm import ConfirmScreen
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.screens.help import HelpScreen, Section, binding_rows
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.screens.results import ResultsScreen
from amltui.tui.screens.runs import RunsScreen
from amltui.tui.screens.sort_picker import SortPicker
from amltui.tui.widgets.runs_table import RunsTable


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

    def show_help(self) -> None:
        self.push_screen(HelpScreen(help_sections()))


def help_sections() -> list[Section]:
    """Every screen of the dashboard with its keys, in the order docs/dashboard.md's key table lists them."""
    return [("runs", binding_rows(RunsScreen, RunsTable)), ("run detail", binding_rows(DetailScreen)),
            ("compare", binding_rows(CompareScreen)), ("results", binding_rows(ResultsScreen)),
            ("launch", binding_rows(LaunchScreen)), ("sort picker", binding_rows(SortPicker)),
            ("confirm", binding_rows(ConfirmScreen)), ("help", binding_rows(HelpScreen)),
            ("everywhere", binding_rows(DashboardApp))]
