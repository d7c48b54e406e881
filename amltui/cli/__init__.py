"""The amltui command line (Typer): one module per group of commands."""

from __future__ import annotations

from typing import Annotated

import typer

from amltui import __version__
from amltui.cli import gpus, inspect, invariance, launch
from amltui.cli.common import RunsDir, console, err
from amltui.runs import default_runs_dir
from amltui.store import Store
from core.config import describe_keys

app = typer.Typer(
    name="amltui",
    help="Adversarial metric learning experiments: FGSM training with angular triplet regularizers over "
    "sensitivity and invariance examples (Ovalle, Czyzycki, Hsieh).",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
store_app = typer.Typer(help="Maintain the runs index (runs/store.json).", no_args_is_help=True)
app.add_typer(store_app, name="store")
app.add_typer(invariance.app, name="invariance")


def version_callback(value: bool) -> None:
    if value:
        console.print(f"amltui {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """amltui: run, watch and report adversarial metric learning experiments."""


launch.register(app)
inspect.register(app)
gpus.register(app)


@app.command("config-keys")
def config_keys() -> None:
    """List every config key with its type and valid values (for --set)."""
    console.print(describe_keys(), highlight=False)


@app.command()
def dashboard(runs_dir: RunsDir = None) -> None:
    """Open the live dashboard: runs, run detail, results; launch / cancel / resume / delete (q quits, runs go on)."""
    from amltui.tui import run_dashboard

    run_dashboard(runs_dir or default_runs_dir())


@store_app.command("rebuild")
def store_rebuild(runs_dir: RunsDir = None) -> None:
    """Recreate the index from the run folders (runs/*/run.json), keeping a corrupt index aside."""
    store = Store(runs_dir or default_runs_dir())
    report = store.rebuild()
    console.print(f"restored {report.restored} run(s) into {store.path}")
    for path, reason in report.skipped:
        err.print(f"skipped {path}: {reason}")
