"""Reading the store and the run folders for the dashboard (called from worker threads, never the UI thread).

Every reader here is the application core's (amltui.app.run_progress, amltui.app.runs, amltui.app.executors.liveness);
none of them imports torch, so the dashboard imports them at start (tests/test_torch_boundary.py checks it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amltui.app.executors.liveness import reap
from amltui.app.fsutil import read_json
from amltui.app.records import DAMAGED, LIVE, Status, inspect
from amltui.app.run_progress import describe, read_progress
from amltui.app.runs import RunDir
from amltui.app.store import Store, StoreError

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
# (key, label, width or None for automatic)
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("id", "run", None), ("status", "status", 9), ("progress", "progress", 16), ("variant", "variant", 8),
    ("seed", "seed", 4), ("dataset", "dataset", 13), ("slot", "slot", 7), ("loss", "loss", 7),
    ("A_orig", "A_orig", 6), ("A_SA", "A_SA", 6), ("A_IA", "A_IA", 6),
)
SORTS = ("created", "id", "status", "progress", "variant", "dataset", "loss", "A_orig", "A_SA", "A_IA")
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


def make_row(record: dict[str, Any], progress: dict[str, Any], order: int) -> RunRow:
    status = str(record.get("status", "?"))
    epoch, epochs = int(record.get("epoch") or 0), int(record.get("epochs") or 0)
    text, done, total = describe(record, progress)
    if status == Status.DONE:
        fraction = 1.0
    elif status == Status.RUNNING:
        fraction = done / total if total else 0.0
    else:
        fraction = epoch / epochs if epochs else 0.0
    phase = text.split()[0] if status == Status.RUNNING and text.split()[0] in ("eval", "invariance") else ""
    count = {"eval": "eval", "invariance": "inv"}.get(phase, f"{epoch}/{epochs}")
    last = record.get("last") or {}
    metrics = record.get("metrics") or {}
    loss = last.get("train_loss")
    batch = progress.get("batch") if status == Status.RUNNING and progress.get("kind") == "batch" else None
    if isinstance(batch, dict) and _num(batch.get("loss")) is not None:
        loss = batch["loss"]
    # Final metrics when evaluated, else the per-epoch monitor estimate marked with "~".
    a_orig = _pct(metrics["A_orig"]) if "A_orig" in metrics else _pct(last.get("monitor_A_orig"), "~")
    a_sa = _pct(metrics["A_SA"]) if "A_SA" in metrics else _pct(last.get("monitor_A_SA"), "~")
    if record.get("flags") and a_sa:
        a_sa += FLAG_MARK  # flagged (core/flags.py): this A_SA is not robustness; the detail screen says why
    cells = {
        "id": record["id"], "status": status, "progress": f"{progress_bar(fraction)} {count}",
        "variant": str(record.get("variant", "")), "seed": str(record.get("seed", "")),
        "dataset": str(record.get("dataset", "")), "slot": str(record.get("slot") or record.get("device") or ""),
        "loss": f"{loss:.4f}" if _num(loss) is not None else "", "A_orig": a_orig, "A_SA": a_sa,
        "A_IA": _pct(metrics.get("A_IA")),
    }
    sort = {
        "created": order, "id": record["id"], "status": STATUS_RANK.get(status, 9), "progress": fraction,
        "variant": cells["variant"], "dataset": cells["dataset"], "loss": _num(loss),
        "A_orig": _num(metrics.get("A_orig", last.get("monitor_A_orig"))),
        "A_SA": _num(metrics.get("A_SA", last.get("monitor_A_SA"))), "A_IA": _num(metrics.get("A_IA")),
    }
    search = " ".join((record["id"], cells["variant"], cells["dataset"], status)).lower()
    return RunRow(record["id"], cells, sort, search, record)


def safe_row(record: dict[str, Any], progress: dict[str, Any], order: int) -> RunRow:
    """make_row, falling back to a bare "damaged" row (with the reason) when the record or the progress file
    holds something unexpected."""
    try:
        return make_row(record, progress if isinstance(progress, dict) else {}, order)
    except Exception as exc:  # any odd content: this row only
        reason = f"cannot show this run ({type(exc).__name__}: {exc})"
    bare = {"id": record["id"], "status": DAMAGED, DAMAGED: reason, "error": reason,
            "stored_status": record.get("status")}
    return make_row(bare, {}, order)


def sort_rows(rows: list[RunRow], column: str, reverse: bool = False) -> list[RunRow]:
    """Rows ordered by a SORTS column; missing values always last."""
    present = [r for r in rows if r.sort.get(column) is not None]
    missing = [r for r in rows if r.sort.get(column) is None]
    present.sort(key=lambda r: (r.sort[column], r.sort["created"]), reverse=reverse)
    return present + missing


def filter_rows(rows: list[RunRow], text: str) -> list[RunRow]:
    needle = text.strip().lower()
    return [r for r in rows if needle in r.search] if needle else rows


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
        rows = [safe_row(r, read_progress(store, r["id"]) if r.get("status") == Status.RUNNING else {}, i)
                for i, r in enumerate(records)]
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
            with open(self.path, "rb") as fh:
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
            reason = "run.json is missing or unreadable" if record is None else "run.json does not hold an object"
            record = damaged_record(self.run_id, reason)
        progress = read_progress(self.store, self.run_id)
        stat = _stat(self.folder.metrics_file)
        if stat != self._metrics_stat:
            self._metrics_stat = stat
            self._epochs = [m for m in self._metric_lines() if m.get("kind") == "epoch"]
        if self._config is None:
            self._config = read_json_or_none(self.folder.config_file)
        pca = next((p for p in (self.path / "pca.json", self.path / "pca.png") if p.exists()), None)
        return RunDetail(inspect(record), progress if isinstance(progress, dict) else {}, list(self._epochs),
                         self.log.read(), self._config, pca, read_json_or_none(self.path / "curve.json"))

    def _metric_lines(self) -> list[dict[str, Any]]:
        try:  # a bad byte is replaced, not fatal: the screen must recover once the file is repaired
            return self.folder.read_metrics()
        except OSError:
            return []
