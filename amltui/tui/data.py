"""Reading the store and the run folders for the dashboard (called from worker threads, never the UI thread).

The runs list itself (rows, sort, filter, progress) is amltui/app/runs/view.py's, the same as `amltui ls`; this
module re-exports its names for the screens. Every reader here is the application core's (amltui.app.runs.progress,
amltui.app.runs, amltui.app.executors.liveness); none of them imports torch, so the dashboard imports them at
start (tests/app/test_torch_boundary.py checks it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amltui.app.executors.liveness import reap
from amltui.app.fsutil import read_json
from amltui.app.runs.folders import RunDir
from amltui.app.runs.progress import read_progress
from amltui.app.runs.records import DAMAGED, LIVE, RESUMABLE, Status, inspect  # noqa: F401  (RESUMABLE: the screens')
from amltui.app.runs.status_style import STATUS_STYLE  # noqa: F401  (the screens' and tests' name)
from amltui.app.runs.store import Store, StoreError
from amltui.app.runs.view import (  # noqa: F401  (the screens' and tests' names for the shared runs view)
    FLAG_MARK,
    SORT_LABELS,
    SORTS,
    STATUS_RANK,
    FilterSyntaxError,
    RunRow,
    filter_rows,
    make_row,
    make_rows,
    parse_filter,
    progress_bar,
    safe_row,
    sort_rows,
    sweep_points,
)
from core.fsio import open_regular
from core.metrics import HEADLINE_ORDER, METRIC_SHORT_LABELS

MARK = "●"  # the marker column of a run selected with space (amltui/tui/widgets/runs_table.py)
# (key, label, width or None when the content sets it). The id is frozen at the left; then what matters most, so
# that at 80 columns a run's status and its accuracies in the headline order (core/metrics.py: clean, PGD, FGSM,
# invariance) show without scrolling; the less important columns further right, where a narrow terminal loses
# them first. A sweep's grid point (column "point") goes right after the status when a shown run has one
# (amltui/tui/widgets/runs_table.py), so that the runs of a sweep are told apart at 80 columns.
# The metric columns are core/metrics.py's HEADLINE_ORDER: its first FIRST_METRICS before the progress, the others
# after the loss, so a metric added there gets a column here.
FIRST_METRICS = 4
_METRIC_COLUMNS = tuple((key, METRIC_SHORT_LABELS[key], 6) for key in HEADLINE_ORDER)
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("mark", " ", 1), ("id", "run", None), ("status", "status", 9), *_METRIC_COLUMNS[:FIRST_METRICS],
    ("progress", "progress", None), ("variant", "variant", 8), ("seed", "seed", 4), ("dataset", "dataset", 13),
    ("loss", "loss", 7), *_METRIC_COLUMNS[FIRST_METRICS:],
    ("flags", "flags", 16), ("tags", "tags", 14), ("sweep", "sweep", 14), ("slot", "slot", 7),
)
POINT_COLUMN = ("point", "point", None)  # inserted after "status" while a shown run belongs to a sweep
FROZEN = 2  # the marker and the id stay put when the table scrolls sideways
NUMERIC = ("loss", "seed", *HEADLINE_ORDER)

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
        rows = make_rows(records, lambda r: read_progress(store, r["id"]), sweep_points(records, self.runs_dir))
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
