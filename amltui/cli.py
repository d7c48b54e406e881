"""The amltui command line (Typer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from amltui import __version__
from amltui.progress import RunProgress
from amltui.report import FORMATS, aggregate, render
from amltui.runs import create_run, default_runs_dir, evaluate_run, execute, run_dir
from amltui.store import Store, StoreError, validate_run_id
from core.config import PRESETS, VARIANTS, ConfigError, RunConfig, describe_keys
from core.data import DATASETS, DataNotFoundError
from core.evaluate import METRIC_LABELS, METRIC_ORDER
from core.train import TrainingFailed

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

console = Console()
err = Console(stderr=True)

RunsDir = Annotated[
    Path | None,
    typer.Option("--runs-dir", help="Folder of runs and the store [default: $AMLTUI_RUNS_DIR or ./runs]."),
]



def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def open_store(runs_dir: Path | None) -> Store:
    try:
        return Store(runs_dir or default_runs_dir())
    except StoreError as exc:
        fail(str(exc))
        raise  # unreachable; keeps type checkers happy


def resolve_run(store: Store, text: str) -> dict[str, Any]:
    """A run by its id or a unique prefix of it."""
    try:
        validate_run_id(text)
    except ValueError as exc:
        fail(str(exc))
    try:
        record = store.get(text)
        if record is not None:
            return record
        matches = [r for r in store.all() if r["id"].startswith(text)]
    except StoreError as exc:
        fail(str(exc))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        fail(f"no run {text!r} in {store.path}; `amltui ls` lists the runs")
    fail(f"{text!r} matches {len(matches)} runs: " + ", ".join(r["id"] for r in matches[:8]) + "; be more specific")
    raise AssertionError  # unreachable


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


# ---- run ----------------------------------------------------------------------------------------------
@app.command()
def run(
    variant: Annotated[str, typer.Option(help=f"Objective: {', '.join(VARIANTS)}.")] = "ml_sa",
    preset: Annotated[str, typer.Option(help=f"Hyperparameter preset: {', '.join(PRESETS)}.")] = "quick",
    seed: Annotated[int, typer.Option(help="Random seed (weights, batch order, mining).")] = 0,
    dataset: Annotated[str, typer.Option(help=f"One of: {', '.join(DATASETS)}.")] = "mnist-sample",
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the four idx files (gz or not).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    train_subset: Annotated[int | None, typer.Option(help="Train on N images (stratified, seed 0).")] = None,
    test_subset: Annotated[int | None, typer.Option(help="Evaluate on N test images (stratified, seed 0).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads [default: the cores available].")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any config key: --set lr=3e-4 "
                                                   "(repeatable; `amltui config-keys` lists them).")] = None,
    run_id: Annotated[str | None, typer.Option("--id", help="Run id [default: generated].")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Train and evaluate one run in the foreground, with a progress bar; the result goes to the store."""
    try:
        config = RunConfig.resolve(
            variant, preset, overrides=set_, seed=seed, dataset=dataset,
            data_dir=str(data_dir) if data_dir else None, epochs=epochs, train_subset=train_subset,
            test_subset=test_subset, device=device, threads=threads,
        )
    except ConfigError as exc:
        fail(str(exc))
    store = open_store(runs_dir)
    try:
        record = create_run(store, config, run_id)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc))
    console.print(f"run [bold]{record['id']}[/]: {config.variant}, preset {config.preset}, seed {config.seed}, "
                  f"{config.dataset}, {config.epochs} epochs → {run_dir(store.runs_dir, record['id']).path}")
    _execute_foreground(store, record["id"], resume=False)


def _execute_foreground(store: Store, run_id: str, resume: bool) -> None:
    with RunProgress(console) as progress:
        try:
            record = execute(store, run_id, resume=resume, listener=progress.on_event)
        except KeyboardInterrupt:
            err.print(f"cancelled; run {run_id} kept (resume with `amltui resume {run_id}`)")
            raise typer.Exit(130) from None
        except (DataNotFoundError, TrainingFailed, ConfigError, ValueError, FileNotFoundError) as exc:
            fail(f"{exc}\nrun {run_id} is marked failed; its folder is kept", code=1)
    _print_metrics(record)


def _print_metrics(record: dict[str, Any]) -> None:
    metrics, counts = record.get("metrics", {}), record.get("metrics_n", {})
    table = Table(title=f"{record['id']} ({record['status']})")
    table.add_column("metric")
    table.add_column("accuracy %", justify="right")
    table.add_column("n", justify="right")
    for key in METRIC_ORDER:
        if key in metrics:
            table.add_row(METRIC_LABELS[key], f"{metrics[key]:.2f}", str(counts.get(key, "")))
    console.print(table)


@app.command()
def resume(run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")], runs_dir: RunsDir = None) -> None:
    """Continue a run from its last epoch checkpoint, in the foreground."""
    store = open_store(runs_dir)
    record = resolve_run(store, run)
    if record["status"] == "done":
        fail(f"run {record['id']} is already done; `amltui eval {record['id']}` re-evaluates it")
    _execute_foreground(store, record["id"], resume=True)


@app.command("config-keys")
def config_keys() -> None:
    """List every config key with its type and valid values (for --set)."""
    console.print(describe_keys(), highlight=False)


# ---- inspect ------------------------------------------------------------------------------------------
@app.command("ls")
def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """List runs."""
    store = open_store(runs_dir)
    try:
        records = store.all()
    except StoreError as exc:
        fail(str(exc))
    if status:
        records = [r for r in records if r.get("status") == status]
    if as_json:
        keys = ("id", "variant", "seed", "dataset", "preset", "status", "epoch", "epochs", "metrics", "pid",
                "device", "created", "error")
        typer.echo(json.dumps([{k: r.get(k) for k in keys} for r in records], indent=1))
        return
    if not records:
        console.print(f"no runs in {store.runs_dir} (start one with `amltui run`)")
        return
    metrics = [k for k in METRIC_ORDER if any(k in (r.get("metrics") or {}) for r in records)]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)
    for col in ("variant", "seed", "dataset", "status", "epoch"):
        table.add_column(col)
    for key in metrics:
        table.add_column(METRIC_LABELS[key].replace("A_IA→target", "→target"), justify="right")
    for r in records:
        m = r.get("metrics") or {}
        table.add_row(r["id"], r.get("variant", ""), str(r.get("seed", "")), r.get("dataset", ""),
                      _status_text(r.get("status", "")), f"{r.get('epoch', 0)}/{r.get('epochs', '?')}",
                      *(f"{m[k]:.2f}" if k in m else "" for k in metrics))
    console.print(table)


def _status_text(status: str) -> str:
    colour = {"done": "green", "running": "cyan", "failed": "red", "cancelled": "yellow"}.get(status, "white")
    return f"[{colour}]{status}[/]"


@app.command()
def show(run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")], runs_dir: RunsDir = None) -> None:
    """Show one run: its record, resolved config and per-epoch metrics."""
    store = open_store(runs_dir)
    record = resolve_run(store, run)
    rd = run_dir(store.runs_dir, record["id"])
    console.print(f"[bold]{record['id']}[/]  {_status_text(record.get('status', ''))}  folder {rd.path}")
    for key in ("variant", "preset", "seed", "dataset", "fingerprint", "device", "code_version", "created",
                "started", "ended", "error"):
        if record.get(key) is not None:
            console.print(f"  {key}: {record[key]}", highlight=False)
    if record.get("traceback"):
        console.print("  traceback (tail):\n" + record["traceback"], highlight=False)
    try:
        config = rd.read_config().to_dict()
        console.print("  config: " + ", ".join(f"{k}={v}" for k, v in config.items()), highlight=False)
    except (OSError, ValueError) as exc:
        console.print(f"  config: unreadable ({exc})")
    epochs = [m for m in rd.read_metrics() if m.get("kind") == "epoch"]
    if epochs:
        table = Table(title="epochs")
        cols = ["epoch", "train_loss", "train_ce_clean", "train_ce_adv", "train_triplet_sa", "train_triplet_ia",
                "monitor_A_orig", "monitor_A_SA", "seconds"]
        cols = [c for c in cols if any(c in m for m in epochs)]
        for c in cols:
            table.add_column(c.replace("train_", "").replace("monitor_", "mon "), justify="right")
        for m in epochs:
            table.add_row(*(f"{m[c]:.4g}" if isinstance(m.get(c), float) else str(m.get(c, "")) for c in cols))
        console.print(table)
    if record.get("metrics"):
        _print_metrics(record)


@app.command("eval")
def eval_(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    device: Annotated[str | None, typer.Option(help="Device for the evaluation [default: the run's].")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Evaluate a run from its checkpoint (A_orig, A_SA, A_IA, A_IA→target, A_PGD) and record the metrics."""
    store = open_store(runs_dir)
    record = resolve_run(store, run)
    with RunProgress(console) as progress:
        try:
            record = evaluate_run(store, record["id"], device=device, listener=progress.on_event)
        except (FileNotFoundError, TrainingFailed, DataNotFoundError, ValueError) as exc:
            fail(str(exc), code=1)
    _print_metrics(record)


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of: {', '.join(FORMATS)}.")] = "md",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of printing.")] = None,
    where: Annotated[list[str] | None, typer.Option(help="Only runs with key=value in their record "
                                                    "(e.g. dataset=mnist); repeatable.")] = None,
    with_runs: Annotated[bool, typer.Option("--with-runs", help="List the run ids behind each row.")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Results table: mean ± std over seeds with n, paired differences against the baseline."""
    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    store = open_store(runs_dir)
    try:
        records = store.all()
    except StoreError as exc:
        fail(str(exc))
    for item in where or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--where {item!r} is not of the form key=value")
        records = [r for r in records if str(r.get(key)) == value]
    text = render(aggregate(records), fmt, with_runs=with_runs)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        typer.echo(text, nl=False)


# ---- store --------------------------------------------------------------------------------------------
@store_app.command("rebuild")
def store_rebuild(runs_dir: RunsDir = None) -> None:
    """Recreate the index from the run folders (runs/*/run.json), keeping a corrupt index aside."""
    store = Store(runs_dir or default_runs_dir())
    report = store.rebuild()
    console.print(f"restored {report.restored} run(s) into {store.path}")
    for path, reason in report.skipped:
        err.print(f"skipped {path}: {reason}")


if __name__ == "__main__":
    app()
