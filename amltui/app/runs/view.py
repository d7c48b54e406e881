"""The runs list both front ends show (`amltui ls` and the dashboard's runs screen): one row per run, the sort and
the filter.

A row (RunRow) holds a run's display cells, its sort values, the text plain filter words search and its progress
(ProgressCell: the fraction done and the count after the bar), worked out from the record and the run's phase
events in progress.json (amltui/app/runs/progress.py), never from display text. The front ends render rows: the
CLI as a Rich table (amltui/cli/runs_listing.py), the dashboard as a DataTable (amltui/tui/widgets/runs_table.py).
The filter grammar is amltui/app/runs/filters.py's, the same for `ls --where` and the dashboard's `/`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from amltui.app.runs.filters import FilterError, Term, matches, parse_query, search_text, value_of
from amltui.app.runs.outcomes import CHANCE_MARK, at_chance
from amltui.app.runs.records import DAMAGED, STATUS_RANK, Status
from amltui.app.runs.records import field_of
from amltui.app.runs.progress import describe, phase_progress
from amltui.app.runs.sweeps import format_value, load_manifest, swept_keys
from core.metrics import HEADLINE_ORDER, METRIC_LABELS, METRIC_ORDER

T = TypeVar("T")
FilterSyntaxError = FilterError  # the dashboard's name for a filter that names no key or value of a run
FLAG_MARK = "⚠"  # a flagged run's A_SA (core/flags.py)

# Sort keys in the order the sort picker lists them, with what each means.
SORT_LABELS: dict[str, str] = {
    "created": "creation time", "id": "run id", "status": "status (running first)",
    "progress": "progress", "variant": "variant", "seed": "seed", "dataset": "dataset", "loss": "training loss",
    "A_orig": "clean accuracy", "A_PGD": "PGD accuracy", "A_SA": "FGSM accuracy (A_SA)",
    "A_IA": "invariance accuracy (A_IA)", "A_IA_target": "invariance target rate (A_IA→t)",
    "A_AA": "AutoAttack accuracy", "sweep": "sweep", "point": "sweep grid point",
}
SORT_LABELS.update({key: METRIC_LABELS[key] for key in METRIC_ORDER if key not in SORT_LABELS})  # a new metric
SORTS = tuple(SORT_LABELS)
BLOCKS = " ▏▎▍▌▋▊▉█"


def progress_bar(fraction: float, width: int = 8) -> str:
    """A text bar with eighth-block resolution, padded with light shade."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (BLOCKS[part] if part else "")
    return bar + "░" * (width - len(bar))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _pct(value: Any, prefix: str = "") -> str:
    number = _num(value)
    return "" if number is None else f"{prefix}{number:.1f}"


class ProgressCell(NamedTuple):
    """A run's progress: the fraction done (the bar) and the count after it (`17/150`, `inv 116/1000`)."""

    fraction: float
    count: str

    @property
    def bar(self) -> str:
        return progress_bar(self.fraction)

    @property
    def text(self) -> str:
        return f"{self.bar} {self.count}"


@dataclass(frozen=True)
class RunRow:
    """One run as the table shows it: display strings, sort values, the text the filter searches, its progress."""

    key: str
    cells: dict[str, str]
    sort: dict[str, Any]
    search: str
    record: dict[str, Any] = field(compare=False, repr=False)
    progress: ProgressCell = ProgressCell(0.0, "")
    final: dict[str, str] = field(default_factory=dict)  # final_metric_cells: `amltui ls`'s metric columns


def _final_or_monitor(metrics: dict[str, Any], last: dict[str, Any], key: str) -> tuple[str, float | None]:
    """The final metric when evaluated, else the per-epoch monitor estimate marked with "~" (cell, sort value)."""
    if key in metrics:
        return _pct(metrics[key]), _num(metrics[key])
    return _pct(last.get(f"monitor_{key}"), "~"), _num(last.get(f"monitor_{key}"))


def _metric_cells(record: dict[str, Any]) -> tuple[dict[str, str], dict[str, float | None]]:
    """The accuracy columns (cells and sort values) of a record."""
    last, metrics = record.get("last") or {}, record.get("metrics") or {}
    cells: dict[str, str] = {}
    sort: dict[str, float | None] = {}
    for key in HEADLINE_ORDER:  # every metric of core/metrics.py; the monitor has A_orig, A_PGD and A_SA
        cells[key], sort[key] = _final_or_monitor(metrics, last, key)
    if record.get("flags") and cells["A_SA"]:
        cells["A_SA"] += FLAG_MARK  # flagged (core/flags.py): this A_SA is not robustness; the detail screen says why
    if at_chance(record):
        cells["A_orig"] += CHANCE_MARK  # learned nothing (amltui/app/runs/outcomes.py); the detail screen says so
    return cells, sort


def final_metric_cells(record: dict[str, Any]) -> dict[str, str]:
    """Every evaluated metric to two decimals, "" where there is none (`amltui ls`: the numbers a paper quotes).

    The dashboard's cells (_metric_cells) show one decimal and, before the evaluation, the "~" monitor estimate;
    `ls` shows only final numbers, and its "!" column marks a flagged run.
    """
    metrics = record.get("metrics") or {}
    return {key: f"{number:.2f}" if (number := _num(metrics.get(key) if isinstance(metrics, dict) else None))
            is not None else "" for key in METRIC_ORDER}


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def progress_count(status: str, progress: dict[str, Any], epoch: int, epochs: int) -> str:
    """The words after the bar: a running run's own phase count (`inv 116/1000`, `eval A_PGD 3/10`) while it
    does not train, else the epochs (`17/150`). Never cut: the column is as wide as its longest cell."""
    phase = phase_progress(progress) if status == Status.RUNNING else None
    return phase or f"{epoch}/{epochs}"


def progress_cell(record: dict[str, Any], progress: dict[str, Any]) -> ProgressCell:
    """A run's progress from its record and its phase events (progress.json's batch, epoch, invariance, eval and
    phase entries, amltui/app/runs/progress.py): a running run's share of its current phase, else its epochs."""
    status = str(record.get("status", "?"))
    epoch, epochs = int(record.get("epoch") or 0), int(record.get("epochs") or 0)
    if status == Status.DONE:
        fraction = 1.0
    elif status == Status.RUNNING:
        _, done, total = describe(record, progress)
        fraction = done / total if total else 0.0
    else:
        fraction = epoch / epochs if epochs else 0.0
    return ProgressCell(fraction, progress_count(status, progress, epoch, epochs))


def make_row(record: dict[str, Any], progress: dict[str, Any], order: int, point: str = "") -> RunRow:
    """One run's row; ``point``: its sweep's grid point (sweep_points), "" when it belongs to no sweep."""
    status = str(record.get("status", "?"))
    cell = progress_cell(record, progress)
    loss = (record.get("last") or {}).get("train_loss")
    batch = progress.get("batch") if status == Status.RUNNING and progress.get("kind") == "batch" else None
    if isinstance(batch, dict) and _num(batch.get("loss")) is not None:
        loss = batch["loss"]
    metric_cells, metric_sort = _metric_cells(record)
    tags, sweep = _names(record.get("tags")), str(record.get("sweep") or "")
    cells = {
        "id": record["id"], "status": status, "progress": cell.text,
        "variant": str(record.get("variant", "")), "seed": str(record.get("seed", "")),
        "dataset": str(record.get("dataset", "")), "slot": str(record.get("slot") or record.get("device") or ""),
        "loss": f"{loss:.4f}" if _num(loss) is not None else "", **metric_cells,
        "flags": ",".join(_names(record.get("flags"))), "tags": ",".join(tags), "sweep": sweep, "point": point,
    }
    sort = {
        "created": order, "id": record["id"], "status": STATUS_RANK.get(status, 9), "progress": cell.fraction,
        "variant": cells["variant"], "seed": _num(record.get("seed")), "dataset": cells["dataset"],
        "loss": _num(loss), "sweep": sweep or None, "point": point or None, **metric_sort,
    }
    return RunRow(record["id"], cells, sort, search_text(record, point), record, cell, final_metric_cells(record))


def safe_row(record: dict[str, Any], progress: dict[str, Any], order: int, point: str = "") -> RunRow:
    """make_row, falling back to a bare "damaged" row (with the reason) when the record or the progress file
    holds something unexpected."""
    try:
        return make_row(record, progress if isinstance(progress, dict) else {}, order, point)
    except Exception as exc:  # any odd content: this row only
        reason = f"cannot show this run ({type(exc).__name__}: {exc})"
    bare = {"id": record["id"], "status": DAMAGED, DAMAGED: reason, "error": reason,
            "stored_status": record.get("status")}
    return make_row(bare, {}, order)


def sweep_points(records: list[dict[str, Any]], runs_dir: Path) -> dict[str, str]:
    """Run id → its grid point (``lambda_sa=0.25``, keys joined by commas) for every run that belongs to a sweep.

    The swept keys are the sweep manifest's (amltui/app/runs/sweeps.py), else the config keys that differ between the
    sweep's runs; values are written as in the sweep view and in overrides (``format_value``: ``1``, not ``1.0``).
    """
    by_sweep: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if isinstance(record.get("sweep"), str) and record["sweep"]:
            by_sweep.setdefault(record["sweep"], []).append(record)
    points: dict[str, str] = {}
    for name, runs in by_sweep.items():
        try:
            keys = list((load_manifest(runs_dir, name) or {}).get("keys") or [])
        except (OSError, ValueError):  # an unreadable manifest or a name no manifest may have
            keys = []
        keys = [k for k in keys if isinstance(k, str)] or swept_keys(runs)
        for record in runs:
            try:
                points[record["id"]] = ",".join(f"{k}={format_value(field_of(record, k))}" for k in keys)
            except (AttributeError, TypeError):  # a damaged record (a config that is not an object): no point
                continue
    return points


def make_rows(records: list[dict[str, Any]], progress_of: Callable[[dict[str, Any]], dict[str, Any]],
              points: dict[str, str] | None = None) -> list[RunRow]:
    """The rows of ``records`` in their order (the index's: creation order); ``progress_of(record)``: a running
    run's progress.json ({} for the others), ``points``: sweep_points."""
    points = points or {}
    return [safe_row(r, progress_of(r) if r.get("status") == Status.RUNNING else {}, i, points.get(r["id"], ""))
            for i, r in enumerate(records)]


# ---- sort -------------------------------------------------------------------------------------------------


def sort_value(row: RunRow, key: str) -> Any:
    """What a row sorts by: its column's sort value (SORTS: the status by STATUS_RANK, accuracies final or else
    the monitor estimate), else the record field or config key of that name (`ls --sort lr`)."""
    if key in row.sort:
        return row.sort[key]
    metrics = row.record.get("metrics")
    if key in METRIC_ORDER:  # a metric without a column of its own: its final number
        return metrics.get(key) if isinstance(metrics, dict) else None
    return value_of(row.record, key)


def _comparable(value: Any) -> tuple[int, Any]:
    """Numbers before text, so that a key with both kinds (a damaged record's) never fails to compare."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, float(value)
    return 1, str(value)


def sort_missing_last(items: Iterable[T], value: Callable[[T], Any], reverse: bool = False) -> list[T]:
    """``items`` ordered by ``value`` (ties keep their order, reversed with the rest); those without a value
    (None, or an empty list) come last either way."""
    keyed = [(value(item), i, item) for i, item in enumerate(items)]
    present = [k for k in keyed if k[0] is not None and k[0] != []]
    missing = [k[2] for k in keyed if k[0] is None or k[0] == []]
    present.sort(key=lambda k: (_comparable(k[0]), k[1]), reverse=reverse)
    return [k[2] for k in present] + missing


def sort_rows(rows: list[RunRow], column: str, reverse: bool = False) -> list[RunRow]:
    """Rows ordered by a sort key (sort_value); runs without a value always last."""
    return sort_missing_last(rows, lambda row: sort_value(row, column), reverse)


# ---- filter -----------------------------------------------------------------------------------------------


def parse_filter(text: str, records: list[dict[str, Any]] = (), option: str = "filter") -> list[Term]:
    """The dashboard's `/` text as terms of the one filter grammar (amltui/app/runs/filters.py parse_query)."""
    return parse_query(text, records, option)


def filter_rows(rows: list[RunRow], text: str) -> list[RunRow]:
    """The rows that pass every term of ``text`` (FilterSyntaxError naming the key or value that does not exist)."""
    terms = parse_filter(text, [r.record for r in rows])
    return [r for r in rows if all(matches(r.record, t, r.search) for t in terms)] if terms else rows
