"""Shared pieces of the command line: consoles, errors, the store and run lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
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
    note = record.get("target_table_note")
    pgd = record.get("pgd") or {}
    caption = []
    if note and ("A_IA" in metrics or "A_IA_target" in metrics):
        caption.append(f"† A_IA, A_IA→target: {note}")
    if pgd and "A_PGD" in metrics:
        caption.append(f"A_PGD: PGD-{pgd['steps']}, L∞ ε {pgd['eps']:g}, step α {pgd['alpha']:g}")
    for split, agreement in (record.get("inv_agreement") or {}).items():
        caption.append(f"fast invariance search ({split}): same neighbour as exact on "
                       f"{100 * agreement['same_neighbour']:.1f}% of {agreement['sample']} sampled queries")
    table = Table(title=f"{record['id']} ({record.get('status')})", caption="\n".join(caption) or None)
    table.add_column("metric")
    table.add_column("accuracy %", justify="right")
    table.add_column("n", justify="right")
    for key in METRIC_ORDER:
        if key in metrics:
            mark = "†" if note and key in ("A_IA", "A_IA_target") else ""
            table.add_row(METRIC_LABELS[key] + mark, f"{metrics[key]:.2f}", str(counts.get(key, "")))
    console.print(table)
    if record.get("selected_epoch") and record.get("select", "last") != "last":
        console.print(f"  weights of epoch {record['selected_epoch']} (select={record['select']}: best PGD accuracy "
                      f"on a hold-out of {record.get('n_holdout', '?')} training images)", highlight=False)
    print_flags(record)


FLAG_MARK = "⚠"


def print_flags(record: dict[str, Any]) -> None:
    """Each flag of a run with the rule that tripped and its numbers (core/flags.py)."""
    for detail in record.get("flag_details") or []:
        console.print(f"[bold yellow]{FLAG_MARK} {escape(str(detail.get('name')))}[/]: "
                      + escape("; ".join(str(r) for r in detail.get("reasons", []))), highlight=False)
        console.print(f"    rule: {escape(str(detail.get('rule', '')))}", highlight=False)
    for name in record.get("flags") or []:  # names without details (written by an older amltui)
        if not any(d.get("name") == name for d in record.get("flag_details") or []):
            console.print(f"[bold yellow]{FLAG_MARK} {escape(str(name))}[/]", highlight=False)


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
