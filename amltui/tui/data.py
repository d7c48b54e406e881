"""Reading the store and the run folders for the dashboard (called from worker threads, never the UI thread).

Every reader here is the application core's (amltui.app.run_progress, amltui.app.runs, amltui.app.executors.liveness);
none of them imports torch, so the dashboard imports them at start (tests/test_torch_boundary.py checks it).
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amltui.app.executors.liveness import reap
from amltui.app.fsutil import read_json
from amltui.app.outcomes import CHANCE_MARK, at_chance
from amltui.app.records import DAMAGED, LIVE, Status, inspect
from amltui.app.report import field_of
from amltui.app.run_progress import describe, phase_progress, read_progress
from amltui.app.runs import RunDir
from amltui.app.store import Store, StoreError
from amltui.app.sweeps import format_value, load_manifest, swept_keys
from core.fsio import open_regular

RESUMABLE = frozenset({Status.FAILED, Status.CANCELLED, Status.ORPHANED})  # what amltui.app.runs.requeue takes
# The table's order for the status column: what needs attention first, finished runs last.
STATUS_RANK: dict[str, int] = {status: rank for rank, status in enumerate((
    Status.RUNNING, Status.STALLED, Status.QUEUED, Status.ORPHANED, Status.FAILED, Status.DAMAGED, Status.CANCELLED,
    Status.DONE))}
STATUS_STYLE: dict[str, str] = {
    Status.DONE: "green", Status.RUNNING: "bold cyan", Status.STALLED: "bold magenta", Status.QUEUED: "white",
    Status.ORPHANED: "magenta", Status.FAILED: "bold red", Status.CANCELLED: "yellow", Status.DAMAGED: "bold magenta",
}
FLAG_MARK = "⚠"
MARK = "●"  # the marker column of a run selected with space (amltui/tui/widgets/runs_table.py)
# (key, label, width or None when the content sets it). The id is frozen at the left; then what matters most, so
# that at 80 columns a run's status and its accuracies in the headline order (core/metrics.py: clean, PGD, FGSM,
# invariance) show without scrolling; the less important columns further right, where a narrow terminal loses
# them first. A sweep's grid point (column "point") goes right after the status when a shown run has one
# (amltui/tui/widgets/runs_table.py), so that the runs of a sweep are told apart at 80 columns.
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("mark", " ", 1), ("id", "run", None), ("status", "status", 9), ("A_orig", "A_orig", 6), ("A_PGD", "A_PGD", 6),
    ("A_SA", "A_SA", 6), ("A_IA", "A_IA", 6), ("progress", "progress", None), ("variant", "variant", 8),
    ("seed", "seed", 4), ("dataset", "dataset", 13), ("loss", "loss", 7), ("A_IA_target", "A_IA→t", 6),
    ("A_AA", "A_AA", 6), ("flags", "flags", 16), ("tags", "tags", 14), ("sweep", "sweep", 14), ("slot", "slot", 7),
)
POINT_COLUMN = ("point", "point", None)  # inserted after "status" while a shown run belongs to a sweep
FROZEN = 2  # the marker and the id stay put when the table scrolls sideways
NUMERIC = ("loss", "seed", "A_orig", "A_PGD", "A_SA", "A_IA", "A_IA_target", "A_AA")
# Sort keys in the order the sort picker lists them, with what each means.
SORT_LABELS: dict[str, str] = {
    "created": "creation time", "id": "run id", "status": "status (running first)",
    "progress": "progress", "variant": "variant", "seed": "seed", "dataset": "dataset", "loss": "training loss",
    "A_orig": "clean accuracy", "A_PGD": "PGD accuracy", "A_SA": "FGSM accuracy (A_SA)",
    "A_IA": "invariance accuracy (A_IA)", "A_IA_target": "invariance target rate (A_IA→t)",
    "A_AA": "AutoAttack accuracy", "sweep": "sweep", "point": "sweep grid point",
}
SORTS = tuple(SORT_LABELS)
FILTER_KEYS = ("variant", "seed", "status", "dataset", "tag", "sweep")
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


@dataclass(frozen=True)
class RunRow:
    """One run as the table shows it: display strings, sort values and the text the filter searches."""

    key: str
    cells: dict[str, str]
    sort: dict[str, Any]
    search: str
    record: dict[str, Any] = field(compare=False, repr=False)


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
    for key in ("A_orig", "A_PGD", "A_SA"):
        cells[key], sort[key] = _final_or_monitor(metrics, last, key)
    for key in ("A_IA", "A_IA_target", "A_AA"):
        cells[key], sort[key] = _pct(metrics.get(key)), _num(metrics.get(key))
    if record.get("flags") and cells["A_SA"]:
        cells["A_SA"] += FLAG_MARK  # flagged (core/flags.py): this A_SA is not robustness; the detail screen says why
    if at_chance(record):
        cells["A_orig"] += CHANCE_MARK  # learned nothing (amltui/app/outcomes.py); the detail screen says so
    return cells, sort


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def progress_count(status: str, progress: dict[str, Any], epoch: int, epochs: int) -> str:
    """The words after the bar: a running run's own phase count (`inv 116/1000`, `eval A_PGD 3/10`) while it
    does not train, else the epochs (`17/150`). Never cut: the column is as wide as its longest cell."""
    phase = phase_progress(progress) if status == Status.RUNNING else None
    return phase or f"{epoch}/{epochs}"


def make_row(record: dict[str, Any], progress: dict[str, Any], order: int, point: str = "") -> RunRow:
    """One run's row; ``point``: its sweep's grid point (sweep_points), "" when it belongs to no sweep."""
    status = str(record.get("status", "?"))
    epoch, epochs = int(record.get("epoch") or 0), int(record.get("epochs") or 0)
    text, done, total = describe(record, progress)
    if status == Status.DONE:
        fraction = 1.0
    elif status == Status.RUNNING:
        fraction = done / total if total else 0.0
    else:
        fraction = epoch / epochs if epochs else 0.0
    count = progress_count(status, progress, epoch, epochs)
    loss = (record.get("last") or {}).get("train_loss")
    batch = progress.get("batch") if status == Status.RUNNING and progress.get("kind") == "batch" else None
    if isinstance(batch, dict) and _num(batch.get("loss")) is not None:
        loss = batch["loss"]
    metric_cells, metric_sort = _metric_cells(record)
    tags, sweep = _names(record.get("tags")), str(record.get("sweep") or "")
    cells = {
        "id": record["id"], "status": status, "progress": f"{progress_bar(fraction)} {count}",
        "variant": str(record.get("variant", "")), "seed": str(record.get("seed", "")),
        "dataset": str(record.get("dataset", "")), "slot": str(record.get("slot") or record.get("device") or ""),
        "loss": f"{loss:.4f}" if _num(loss) is not None else "", **metric_cells,
        "flags": ",".join(_names(record.get("flags"))), "tags": ",".join(tags), "sweep": sweep, "point": point,
    }
    sort = {
        "created": order, "id": record["id"], "status": STATUS_RANK.get(status, 9), "progress": fraction,
        "variant": cells["variant"], "seed": _num(record.get("seed")), "dataset": cells["dataset"],
        "loss": _num(loss), "sweep": sweep or None, "point": point or None, **metric_sort,
    }
    search = " ".join((record["id"], cells["variant"], cells["dataset"], status, sweep, point, *tags)).lower()
    return RunRow(record["id"], cells, sort, search, record)


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

    The swept keys are the sweep manifest's (amltui/app/sweeps.py), else the config keys that differ between the
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


def sort_rows(rows: list[RunRow], column: str, reverse: bool = False) -> list[RunRow]:
    """Rows ordered by a SORTS column; missing values always last."""
    present = [r for r in rows if r.sort.get(column) is not None]
    missing = [r for r in rows if r.sort.get(column) is None]
    present.sort(key=lambda r: (r.sort[column], r.sort["created"]), reverse=reverse)
    return present + missing


class FilterSyntaxError(ValueError):
    """A ``key=value`` term of the runs filter names a key (or a status) that does not exist."""


def _term(word: str) -> Callable[[RunRow], bool] | None:
    """One filter term as a test of a row: ``key=value`` (FILTER_KEYS), else a substring of the row's text.
    None for a term still being typed (``key=`` with no value)."""
    key, eq, value = word.partition("=")
    if not eq:
        return lambda row: word in row.search
    key = key.strip()
    if key not in FILTER_KEYS:
        close = difflib.get_close_matches(key, FILTER_KEYS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise FilterSyntaxError(f"unknown filter key {key!r}; {hint}valid keys: {', '.join(FILTER_KEYS)} "
                                "(or plain text)")
    if not value:
        return None
    if key == "status" and value not in STATUS_RANK:
        raise FilterSyntaxError(f"status={value!r} is not a status; valid: {', '.join(STATUS_RANK)}")
    if key == "tag":
        return lambda row: value in (t.lower() for t in _names(row.record.get("tags")))
    return lambda row: row.record.get(key) is not None and str(row.record[key]).lower() == value


def parse_filter(text: str) -> list[Callable[[RunRow], bool]]:
    """The runs filter: whitespace-separated terms, all of which a row must pass (case-insensitive).

    ``variant=ml_sa``, ``seed=1``, ``status=failed``, ``dataset=mnist``, ``tag=paper``, ``sweep=NAME`` match that
    field exactly; any other word is a substring of the id, variant, dataset, status, sweep or tags. An unknown key
    raises FilterSyntaxError naming the valid ones.
    """
    terms = [_term(word) for word in text.lower().split()]
    return [t for t in terms if t is not None]


def filter_rows(rows: list[RunRow], text: str) -> list[RunRow]:
    """The rows that pass every term of ``text`` (parse_filter; FilterSyntaxError on a bad key)."""
    terms = parse_filter(text)
    return [r for r in rows if all(term(r) for term in terms)] if terms else rows


@dataclass
class RunsSnapshot:
    rows: list[RunRow]
    error: str | None = None


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class RunsReader:
    """Reads the store and the live runs' progress files; skips the work when none of them changed.

    Callers in several threads hold ``lock`` around ``poll`` (one read at a time). A full read (with ``reap``,
    which notices dead workers) is forced every ``full_every`` seconds even when nothing changed on disk.
    """

    def __init__(self, runs_dir: Path, full_every: float = 5.0) -> None:
        self.runs_dir = Path(runs_dir)
        self.full_every = full_every
        self.store: Store | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self._signature: tuple | None = None
        self._last_full = 0.0

    def _live_ids(self) -> list[str]:
        return [i for i, r in self.records.items() if r.get("status") in LIVE]

    def signature(self) -> tuple:
        files = [self.runs_dir / "store.json"]
        files += [self.runs_dir / run_id / "progress.json" for run_id in self._live_ids()]
        return tuple(_stat(p) for p in files)

    def poll(self, force: bool = False) -> RunsSnapshot | None:
        """A new snapshot, or None when nothing changed since the last one."""
        now = time.monotonic()
        full = force or now - self._last_full >= self.full_every
        if not full and self.store is not None and self.signature() == self._signature:
            return None
        try:
            if self.store is None:
                self.store = Store(self.runs_dir)
            if full:
                reap(self.store)
                self._last_full = now
            signature = self.signature()
            records = self.store.all()
        except (StoreError, OSError, ValueError) as exc:
            self._signature = None
            return RunsSnapshot([], error=str(exc))
        # One damaged record or progress.json marks its own row, never the table.
        records = [inspect(r, self.runs_dir, read_folder=False) for r in records]
        self.records = {r["id"]: r for r in records}
        store = self.store
        points = sweep_points(records, self.runs_dir)
        rows = [safe_row(r, read_progress(store, r["id"]) if r.get("status") == Status.RUNNING else {}, i,
                         points.get(r["id"], "")) for i, r in enumerate(records)]
        # Taken before the read: a write racing with it changes the signature and is read next time.
        self._signature = signature if len(signature) == 1 + len(self._live_ids()) else None
        return RunsSnapshot(rows)


# ---- one run ------------------------------------------------------------------------------------------


def read_json_or_none(path: Path) -> Any:
    """amltui.app.fsutil.read_json, None when the file is missing or not JSON (the screens say so themselves)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


class LogTail:
    """New complete lines of a growing text file since the last call (restarts if the file shrank)."""

    def __init__(self, path: Path, max_start: int = 64_000) -> None:
        self.path = path
        self.offset = 0
        self.max_start = max_start
        self._partial = b""

    def read(self) -> list[str]:
        try:
            size = self.path.stat().st_size
            if size < self.offset:
                self.offset, self._partial = 0, b""
            if self.offset == 0 and size > self.max_start:  # a huge log: start near its end
                self.offset = size - self.max_start
            with open_regular(self.path) as fh:  # a FIFO in place of the log is refused, not waited on
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]


@dataclass
class RunDetail:
    record: dict[str, Any]
    progress: dict[str, Any]
    epochs: list[dict[str, Any]]
    new_log: list[str]  # the log lines new since the previous read
    config: dict[str, Any] | None
    pca: Path | None
    curve: dict[str, Any] | None = None


def damaged_record(run_id: str, reason: str) -> dict[str, Any]:
    return {"id": run_id, "status": DAMAGED, DAMAGED: reason, "error": reason}


class DetailReader:
    """Everything the detail screen shows about one run, read from its folder (run.json is the truth)."""

    def __init__(self, runs_dir: Path, run_id: str) -> None:
        self.store = Store(runs_dir)
        self.folder = RunDir(Path(runs_dir) / run_id)
        self.path = self.folder.path
        self.run_id = run_id
        self.lock = threading.Lock()  # for callers in several threads: read() moves the log tail on
        self.log = LogTail(self.folder.log_file)
        self._metrics_stat: tuple[int, int] | None = None
        self._epochs: list[dict[str, Any]] = []
        self._config: dict[str, Any] | None = None

    def read(self) -> RunDetail:
        record = read_json_or_none(self.folder.record_file)
        if not isinstance(record, dict):
            record = damaged_record(self.run_id, self._unreadable(record))
        else:
            record = inspect(record)
        progress = read_progress(self.store, self.run_id)
        stat = _stat(self.folder.metrics_file)
        if stat != self._metrics_stat:
            self._metrics_stat = stat
            self._epochs = [m for m in self._metric_lines() if m.get("kind") == "epoch"]
        if self._config is None:
            self._config = read_json_or_none(self.folder.config_file)
        pca = next((p for p in (self.path / "pca.json", self.path / "pca.png") if p.exists()), None)
        return RunDetail(record, progress if isinstance(progress, dict) else {}, list(self._epochs),
                         self.log.read(), self._config, pca, read_json_or_none(self.path / "curve.json"))

    def _unreadable(self, record: Any) -> str:
        """Why run.json gives no record, in words (the folder deleted, a FIFO, garbled JSON, …)."""
        if not self.path.is_dir():
            return f"its folder {self.path} was deleted (or moved)"
        if record is not None:
            return f"its run.json holds a JSON {type(record).__name__}, not a run record"
        try:
            read_json(self.folder.record_file)
        except (OSError, ValueError) as exc:
            return f"its run.json cannot be read: {exc.strerror if isinstance(exc, OSError) else exc}"
        return "its run.json cannot be read"

    def _metric_lines(self) -> list[dict[str, Any]]:
        try:  # a bad byte is replaced, not fatal: the screen must recover once the file is repaired
            return self.folder.read_metrics()
        except OSError:
            return []
