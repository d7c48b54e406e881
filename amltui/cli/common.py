"""Shared pieces of the command line: consoles, errors, the store and run lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from amltui.runs import default_runs_dir
from amltui.store import Store, StoreError, validate_run_id
from core.metrics import METRIC_LABELS, METRIC_ORDER

console = Console()
err = Console(stderr=True)

RunsDir = Annotated[
    Path | None,
    typer.Option("--runs-dir", help="Folder of runs and the store [default: $AMLTUI_RUNS_DIR or ./runs]."),
]
RunArg = Annotated[str, typer.Argument(help="Run id (or a unique prefix of it).")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error the user can act on (no traceback) and exit."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def open_store(runs_dir: Path | None) -> Store:
    try:
        return Store(runs_dir or default_runs_dir())
    except (StoreError, OSError) as exc:
        fail(str(exc))


def reap_lost(store: Store) -> list[str]:
    """Mark dead workers' runs failed (lost) before showing anything; a corrupt store is a clear error."""
    from amltui.launch.liveness import reap

    try:
        return reap(store)
    except StoreError as exc:
        fail(str(exc))


def all_records(store: Store) -> list[dict[str, Any]]:
    try:
        return store.all()
    except StoreError as exc:
        fail(str(exc))


def resolve_run(store: Store, text: str) -> dict[str, Any]:
    """A run by its id or a unique prefix of it."""
    try:
        validate_run_id(text)
    except ValueError as exc:
        fail(str(exc))
    try:
        record = store.get(text)
    except StoreError as exc:
        fail(str(exc))
    if record is not None:
        return record
    matches = [r for r in all_records(store) if r["id"].startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        fail(f"no run {text!r} in {store.path}; `amltui ls` lists the runs")
    fail(f"{text!r} matches {len(matches)} runs: {', '.join(r['id'] for r in matches[:8])}; be more specific")


def status_text(status: str) -> str:
    colour = {"done": "green", "running": "cyan", "failed": "red", "cancelled": "yellow", "stalled": "magenta",
              "orphaned": "magenta"}.get(status, "white")
    return f"[{colour}]{status}[/]"


def print_metrics(record: dict[str, Any]) -> None:
    metrics, counts = record.get("metrics") or {}, record.get("metrics_n") or {}
    if not metrics:
        return
    table = Table(title=f"{record['id']} ({record.get('status')})")
    table.add_column("metric")
    table.add_column("accuracy %", justify="right")
    table.add_column("n", justify="right")
    for key in METRIC_ORDER:
        if key in metrics:
            table.add_row(METRIC_LABELS[key], f"{metrics[key]:.2f}", str(counts.get(key, "")))
    console.print(table)


def parse_list(text: str, what: str, convert: type = str) -> list:
    """'a,b' → ['a', 'b'] (ints with convert=int), duplicates removed, order kept."""
    items = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = convert(part)
        except ValueError:
            fail(f"{what} {text!r}: {part!r} is not a valid {convert.__name__}")
        if value not in items:
            items.append(value)
    if not items:
        fail(f"{what} is empty")
    return items
