"""The table of `amltui ls`: which runs (--status, --where), in which order (--sort), and the columns that fit.

The rows, their progress, the sort and the filter grammar are the application core's (amltui/app/runs/view.py,
amltui/app/runs/filters.py), the same as the dashboard's runs table; this module picks the columns and renders them.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from amltui.app.runs.filters import FilterError, apply_where, check_value, known_keys, parse_where, suggest
from amltui.app.runs.progress import read_progress
from amltui.app.runs.records import Status
from amltui.app.runs.store import Store
from amltui.app.runs.view import SORTS, RunRow, make_rows, sort_rows, sweep_points
from amltui.app.safetext import markup_safe
from amltui.cli.common import FLAG_MARK, fit_columns, status_text
from core.metrics import HEADLINE_ORDER, METRIC_ORDER, METRIC_SHORT_LABELS

# Columns, most important first: on a narrow terminal the last ones are left out, not squeezed.
# The metrics in the headline order of core/metrics.py: at 80 columns A_orig, A_PGD (the honest robustness number)
# and A_SA fit.
LS_COLUMNS = ("id", "status", "!", "progress", "gpu", *HEADLINE_ORDER[:4], "error/flag", "tags",
              "variant", "seed", "dataset", *HEADLINE_ORDER[4:], "slot")
# Columns shown only when some run has a value in them.
OPTIONAL = (*METRIC_ORDER, "gpu", "!", "error/flag", "tags")
# Which columns stay when not all fit, most important first (the table keeps LS_COLUMNS' order): the failure
# reason comes right after the headline numbers, so `ls --status failed` shows it at 80 columns.
LS_PRIORITY = ["id", "status", "progress", "!", "A_orig", "A_PGD", "error/flag", "A_SA", "gpu", "A_IA",
               "A_IA_target", "variant", "seed", "tags", "dataset", "A_AA", "slot"]
ERROR_WIDTH = 40  # the failure reason is cut here (the whole text: `amltui show RUN`; --wide: the first line)
ERROR_MIN = 16  # ... and narrowed down to this to fit the terminal (it is text: never a number cut)


def statuses(items: list[str] | None) -> set[str]:
    """--status values (repeatable, each may be a comma list), checked: an unknown one is a FilterError."""
    wanted = {part.strip() for item in items or [] for part in item.split(",") if part.strip()}
    for status in wanted:
        check_value("status", status, "--status")
    return wanted


def select(records: list[dict[str, Any]], status: list[str] | None,
           where: list[str] | None) -> tuple[list[dict[str, Any]], str | None]:
    """(the runs --status and --where keep, None) or ([], a sentence naming the filter that left no run)."""
    wanted = statuses(status)
    filters = parse_where(where or [], records)
    if wanted:
        before = len(records)
        records = [r for r in records if r.get("status") in wanted]
        if before and not records:
            return [], f"no run matches --status {','.join(sorted(wanted))} (of {before} run(s))"
    return apply_where(records, filters)


def sort_key(text: str, reverse: bool, records: list[dict[str, Any]]) -> tuple[str, bool]:
    """--sort KEY (``-KEY``: descending) checked against the dashboard's sort keys, record fields, config keys and
    metric names."""
    key = text.strip()
    if key.startswith("-"):
        key, reverse = key[1:], not reverse
    keys = sorted({*SORTS, *known_keys(records), *METRIC_ORDER})
    if key not in keys:
        raise FilterError(f"--sort: unknown key {key!r}; {suggest(key, keys)}valid keys: {', '.join(keys)}")
    return key, reverse


def rows_of(records: list[dict[str, Any]], store: Store | None = None) -> list[RunRow]:
    """The runs view's rows (amltui/app/runs/view.py); ``store``: where running runs' progress.json is read."""
    if store is None:
        return make_rows(records, lambda r: {})
    return make_rows(records, lambda r: read_progress(store, r["id"]), sweep_points(records, store.runs_dir))


def sorted_rows(rows: list[RunRow], text: str, reverse: bool) -> list[RunRow]:
    """The rows in --sort's order (the dashboard's sort: runs without a value last either way)."""
    return sort_rows(rows, *sort_key(text, reverse, [r.record for r in rows]))


def _short(text: str, width: int) -> str:
    """The first line of a stored text, cut to ``width`` with "…" (verbatim otherwise)."""
    lines = text.strip().splitlines() or [""]
    if len(lines[0]) > width:
        return lines[0][:width - 1] + "…"
    return lines[0] + (" …" if len(lines) > 1 else "")


def cell(row: RunRow, col: str) -> str:
    """The text of one cell (plain; escaped when the table is built)."""
    r = row.record
    if col in METRIC_ORDER:  # the view's final numbers (amltui/app/runs/view.py final_metric_cells)
        return row.final[col]
    if col == "progress":  # a quiet phase with its own count, else the epochs (from the phase events)
        return row.progress.count
    if col == "gpu":  # where a running run is, as `amltui gpus` names it (gpu2, gpu0.mig1)
        return str(r.get("gpu") or "") if r.get("status") == Status.RUNNING else ""
    if col == "!":  # a flagged run (core/flags.py), e.g. gradient masking
        return FLAG_MARK if r.get("flags") else ""
    if col == "error/flag":
        return _error_text(r, ERROR_WIDTH)
    if col == "tags":
        return ",".join(str(t) for t in r.get("tags") or [])
    return str(r.get(col) if r.get(col) is not None else "")


def _title(col: str) -> str:
    return METRIC_SHORT_LABELS.get(col, col)


def runs_table(records: list[dict[str, Any]], width: int | None) -> Table:
    """The runs as a table that fits ``width`` columns (see fit_runs_table)."""
    return fit_runs_table(rows_of(records), width)[0]


def fit_runs_table(rows: list[RunRow], width: int | None) -> tuple[Table, list[str]]:
    """(table, the columns left out): the rows in a table that fits ``width`` (None: every column, whole first
    lines of the errors) by leaving out the least important columns whole; only the failure reason's text
    narrows (down to ERROR_MIN) to make room. A running run in a quiet phase shows that phase's own progress
    (`inv 120/1000`) instead of its epoch (the row's ProgressCell)."""
    records = [row.record for row in rows]
    cells = {c: [cell(row, c) for row in rows] for c in LS_COLUMNS}
    if width is None:
        cells["error/flag"] = [_error_text(r, None) for r in records]
    present = [c for c in LS_COLUMNS if c not in OPTIONAL or any(cells[c])]
    widths = {c: max([len(_title(c))] + [len(v) for v in cells[c]]) for c in present}
    shown, dropped = fit_columns(present, widths, width, LS_PRIORITY, keep=3)
    if "error/flag" in dropped:  # narrowed instead of left out, when that is enough (it takes the room left)
        widths["error/flag"] = min(widths["error/flag"], ERROR_MIN)
        first = [c for c in dropped if c != "error/flag"]  # less important: they stay out
        shown, more = fit_columns([c for c in present if c not in first], widths, width, LS_PRIORITY, keep=3)
        dropped = first + more
    if "error/flag" in shown and width is not None:
        room = width - sum(widths[c] + 3 for c in shown if c != "error/flag") - 2
        cells["error/flag"] = [_error_text(r, max(ERROR_MIN, min(room, ERROR_WIDTH))) for r in records]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in shown:
        table.add_column(_title(col), no_wrap=True, justify="right" if col in METRIC_ORDER else "left")
    for i in range(len(records)):
        table.add_row(*(status_text(cells[c][i]) if c == "status" else markup_safe(cells[c][i]) for c in shown))
    return table, [_title(c) for c in dropped]


def _error_text(r: dict[str, Any], width: int | None) -> str:
    """The failure reason (or the flags) of a run, cut to ``width`` with "…" (None: its whole first line)."""
    if r.get("error") and r.get("status") != Status.DONE:
        text = str(r["error"])
    else:
        text = ", ".join(str(f) for f in r.get("flags") or [])
    return _short(text, width if width is not None else 10_000)
