"""The amltui command line (Typer): one module per group of commands."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from amltui import __version__
from amltui.app.runs import default_runs_dir
from amltui.app.store import Store, StoreError
from amltui.cli import gpus, invariance, lifecycle, results
from amltui.cli.common import RunsDir, console, describe_os_error, err, fail
from core.config import VARIANTS, key_reference

# Typer shows an Enum's values as [a|b|c] in --help and refuses any other value with exit code 2.
Variant = enum.StrEnum("Variant", {v: v for v in VARIANTS})


class _Commands(TyperGroup):
    """The command group; a file-system failure no command foresaw (disk full, read-only folder) becomes a
    one-line error instead of a traceback."""

    def invoke(self, ctx: Any) -> Any:  # ctx: Typer's vendored click Context
        try:
            return super().invoke(ctx)
        except OSError as exc:
            fail(describe_os_error(exc), code=1)


app = typer.Typer(
    name="amltui",
    cls=_Commands,
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


lifecycle.register(app)
results.register(app)
gpus.register(app)


@app.command("config-keys")
def config_keys(
    variant: Annotated[Variant, typer.Option(help="Variant whose loss weights the per-preset defaults show.")]
    = Variant.ml_sa,
) -> None:
    """List every config key (for --set): type, valid values, description and its default under each preset."""
    console.print(escape(key_reference(variant.value)), highlight=False, soft_wrap=True)


@app.command()
def dashboard(runs_dir: RunsDir = None) -> None:
    """Open the live dashboard: runs, run detail, results; launch / cancel / resume / delete (q quits, runs go on)."""
    from amltui.tui import run_dashboard

    run_dashboard(runs_dir or default_runs_dir())


@store_app.command("rebuild")
def store_rebuild(runs_dir: RunsDir = None) -> None:
    """Recreate the index from the run folders (runs/*/run.json), keeping a corrupt index aside.

    Records with fields of the wrong type, and index records without a readable run.json, are kept but marked
    damaged (listed here); symlinked folders are skipped.
    """
    try:
        store = Store(runs_dir or default_runs_dir())
        report = store.rebuild()
    except StoreError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(describe_os_error(exc))
    console.print(f"restored {report.restored} run(s) into {store.path}", highlight=False, markup=False)
    for path, reason in report.skipped:
        err.print(f"skipped {path}: {reason}", highlight=False, markup=False)
    for run_id, reason in report.damaged:
        err.print(f"marked damaged {run_id}: {reason}", highlight=False, markup=False)
    if report.damaged:
        err.print("fix those run folders and rebuild again, or `amltui rm RUN` them", highlight=False, markup=False)
