"""What `amltui show RUN` prints: the record and the config as aligned key/value grids, the duration, the error
once, and the per-epoch table with short headers."""

from __future__ import annotations

import json
import time
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from amltui.app.runs.progress import duration
from amltui.app.runs.records import Status
from amltui.app.safetext import markup_safe, printable

# Record fields shown at the top, in this order (error, traceback, metrics and flags have their own sections).
RECORD_FIELDS = ("variant", "preset", "seed", "dataset", "sweep", "tags", "note", "device", "gpu", "host",
                 "fingerprint", "code_version", "created", "started", "ended", "duration", "resumes", "select",
                 "selected_epoch", "monitor", "stall", "cancel_requested")

# Per-epoch columns of metrics.jsonl and their short headers (the table's caption says what they are).
EPOCH_COLUMNS = {"epoch": "epoch", "train_loss": "loss", "train_ce_clean": "CE", "train_ce_adv": "CE adv",
                 "train_triplet_sa": "T_sa", "train_triplet_ia": "T_ia", "monitor_A_orig": "A_orig",
                 "monitor_A_SA": "A_SA", "monitor_A_PGD": "A_PGD", "seconds": "s"}
EPOCH_CAPTION = ("loss: training objective; CE / CE adv: cross-entropy on clean / adversarial images; T_sa, T_ia: "
                 "triplet losses; A_*: accuracy % on the monitor images; s: seconds")

# The triplets' diagnostics per epoch (core/losses.py objective_terms), in a table of their own: only the types a
# run computes are in metrics.jsonl (a baseline has none, and no table).
TRIPLET_COLUMNS = {"epoch": "epoch", "train_triplet_sa": "T_sa", "train_active_sa": "act_sa%",
                   "train_neg_dist_sa": "D⁻_sa", "train_triplet_ia": "T_ia", "train_active_ia": "act_ia%",
                   "train_neg_dist_ia": "D⁻_ia"}
TRIPLET_CAPTION = ("T: triplet loss; act%: share of triplets with a positive hinge (loss > 0); D⁻: mean distance from "
                   "the anchor to its mined negative (the hardest one with miner=hardest), in the run's distance "
                   "(abs_cos: 1 − |cos| in [0, 1]; cos: 1 − cos in [0, 2]); epoch means")


LONG_PAIR = 36  # a pair longer than this gets a row of its own, so one long value does not make every column wide


def kv_grid(pairs: list[tuple[str, str]], width: int) -> Table:
    """Key/value pairs in aligned columns, as many pairs to a row as fit ``width`` (values verbatim); long pairs
    follow on rows of their own."""
    short = [(k, v) for k, v in pairs if len(k) + len(v) < LONG_PAIR]
    long = [(k, v) for k, v in pairs if len(k) + len(v) >= LONG_PAIR]
    table = Table.grid(pad_edge=False)
    table.add_row(_columns(short, width))
    if long:
        table.add_row(_columns(long, 1))
    return table


def _columns(pairs: list[tuple[str, str]], width: int) -> Table:
    per_row = next((n for n in range(len(pairs), 1, -1) if _fits(pairs, n, width)), 1)
    rows = -(-len(pairs) // per_row) if pairs else 0  # filled down the columns, like `ls`
    grid = Table.grid(padding=(0, 1), pad_edge=False)
    for _ in range(per_row):
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(no_wrap=False)
    for r in range(rows):
        row: list[str] = []
        for c in range(per_row):
            i = c * rows + r
            row += [markup_safe(pairs[i][0]), markup_safe(pairs[i][1]) + "  "] if i < len(pairs) else ["", ""]
        grid.add_row(*row)
    return grid


def _fits(pairs: list[tuple[str, str]], per_row: int, width: int) -> bool:
    rows = -(-len(pairs) // per_row)
    columns = [pairs[c * rows:(c + 1) * rows] for c in range(per_row)]
    return sum(max(len(k) for k, _ in col) + max(len(v) for _, v in col) + 4 for col in columns if col) <= width


def value_text(value: Any) -> str:
    """A config or record value as written in config.json and accepted by --set: null, false, 0.001, [1, 2];
    a string verbatim (no quotes)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def config_pairs(config: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key, value_text(value)) for key, value in config.items()]


def record_pairs(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The record's fields worth showing, as text (tags joined; a running run's duration up to now)."""
    running = record.get("status") == Status.RUNNING
    took = duration(record, now=time.time() if running else None)
    values = {**record, "duration": (took + (" so far" if running else "")) if took else None}
    pairs = []
    for key in RECORD_FIELDS:
        value = values.get(key)
        if value is None or value == [] or value == "":
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list) else value_text(value)
        pairs.append((key, text[:19].replace("T", " ") if key in ("created", "started", "ended") else text))
    return pairs


def print_error(console: Console, record: dict[str, Any]) -> None:
    """The failure reason, then the traceback's tail without the last lines that repeat it."""
    error = printable(record.get("error") or "", lines=True).strip()
    if error:
        console.print(f"  error: {error}", highlight=False, markup=False, style="red")
    trace = printable(record.get("traceback") or "", lines=True).rstrip()
    if error and trace.endswith(error):  # the traceback ends with "module.ExcType: message", the error's text
        head = trace[:-len(error)]
        trace = (head if head.endswith("\n") else head[:head.rfind("\n") + 1]).rstrip()
    if trace:
        console.print("  traceback (tail, without the error above):\n" + trace, highlight=False, markup=False)


def epoch_table(epochs: list[dict[str, Any]], where: str) -> Table:
    """One row per epoch with short headers that are never cut."""
    cols = [c for c in EPOCH_COLUMNS if any(c in m for m in epochs)]
    table = Table(title=f"epochs (monitor: {where})", caption=EPOCH_CAPTION, box=box.SIMPLE_HEAD, show_edge=False,
                  padding=(0, 0, 0, 1), caption_justify="left")  # 10 columns in 80
    for c in cols:
        table.add_column(EPOCH_COLUMNS[c], justify="right", no_wrap=True, min_width=len(EPOCH_COLUMNS[c]))
    for m in epochs:
        table.add_row(*(_number(c, m[c]) if isinstance(m.get(c), float) else markup_safe(m.get(c, "")) for c in cols))
    return table


def triplet_table(epochs: list[dict[str, Any]], distance: str | None = None) -> Group | None:
    """One row per epoch of the triplet diagnostics and what they are (a note as wide as the terminal, not the
    narrow table), or None when the run computed no triplet."""
    if not any(k in m for m in epochs for k in ("train_active_sa", "train_active_ia")):
        return None
    shown = {"train_triplet_sa": "train_active_sa", "train_triplet_ia": "train_active_ia"}
    cols = [c for c in TRIPLET_COLUMNS if any(c in m for m in epochs)
            and (c not in shown or any(shown[c] in m for m in epochs))]  # a loss of a type not computed: out
    title = "triplets" + (f" ({escape(distance)})" if distance else "")
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0, 0, 1))
    for c in cols:
        table.add_column(TRIPLET_COLUMNS[c], justify="right", no_wrap=True, min_width=len(TRIPLET_COLUMNS[c]))
    for m in epochs:
        table.add_row(*(_triplet_number(c, m[c]) if isinstance(m.get(c), int | float) and c != "epoch"
                        else escape(str(m.get(c, ""))) for c in cols))
    return Group(table, Text(TRIPLET_CAPTION, style="dim"))


def _triplet_number(col: str, value: float) -> str:
    return f"{100 * value:.1f}" if col.startswith("train_active_") else f"{value:.4f}"


def _number(col: str, value: float) -> str:
    """Accuracies with 2 decimals, seconds with 1, losses with 4 (narrow columns that fit 80 columns)."""
    if col.startswith("monitor_"):
        return f"{value:.2f}"
    if col == "seconds":
        return f"{value:.1f}"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.4g}"
