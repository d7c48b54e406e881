"""The dashboard application: the runs screen first; the others are pushed from it."""

from __future__ import annotations

from pathlib import Path

from textual import work
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
        self.warm = False  # the heavy modules are imported

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        self._warm_up()

    @work(thread=True, exit_on_error=False)
    def _warm_up(self) -> None:
        """Import the modules actions need (torch via core.data, for launching) off the UI thread, ahead of time."""
        import amltui.app.executors.liveness  # noqa: F401
        import amltui.app.report  # noqa: F401
        import amltui.app.run_progress  # noqa: F401
        import amltui.cli.lifecycle  # noqa: F401
        import core.data  # noqa: F401

        self.call_from_thread(self._warmed)

    def _warmed(self) -> None:
        self.warm = True
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                screen.poll(force=True)  # now with describe() and reap()
