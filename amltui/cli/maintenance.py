"""Commands around the runs: the dashboard and the index's upkeep (`store rebuild`)."""

from __future__ import annotations

import typer

from amltui.app.runs.folders import default_runs_dir
from amltui.app.safetext import printable
from amltui.cli.common import console, err, open_store, user_errors
from amltui.cli.help_text import Command, Group
from amltui.cli.options import RunsDir
from amltui.tui import run_dashboard


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(dashboard)
    store_app = typer.Typer(help="Maintain the runs index (runs/store.json).", no_args_is_help=True, cls=Group)
    store_app.command("rebuild", cls=Command)(store_rebuild)
    app.add_typer(store_app, name="store")


def dashboard(runs_dir: RunsDir = None) -> None:
    """Open the live dashboard: runs, run detail, results; launch / cancel / resume / delete (q quits, runs go on)."""
    run_dashboard(runs_dir or default_runs_dir())


def store_rebuild(runs_dir: RunsDir = None) -> None:
    """Recreate the index from the run folders (runs/*/run.json), keeping a corrupt index aside.

    Records with fields of the wrong type, and index records without a readable run.json, are kept but marked
    damaged (listed here); symlinked folders are skipped.
    """
    store = open_store(runs_dir)
    with user_errors():
        report = store.rebuild()
    console.print(f"restored {report.restored} run(s) into {store.path}", highlight=False, markup=False)
    for path, reason in report.skipped:
        err.print(printable(f"skipped {path}: {reason}"), highlight=False, markup=False)
    for run_id, reason in report.damaged:
        err.print(printable(f"marked damaged {run_id}: {reason}"), highlight=False, markup=False)
    if report.damaged:
        err.print("fix those run folders and rebuild again, or `amltui rm RUN` them", highlight=False, markup=False)
