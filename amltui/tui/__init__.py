"""The Textual dashboard: `amltui dashboard` / `python -m amltui.tui --runs-dir DIR`."""

from __future__ import annotations

from pathlib import Path


def run_dashboard(runs_dir: Path) -> None:
    """Run the dashboard on ``runs_dir`` until the user quits; runs keep going (their workers are separate)."""
    from amltui.tui.dashboard import DashboardApp

    DashboardApp(Path(runs_dir)).run()
