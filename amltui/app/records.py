"""Checking run records before anything shows, counts or acts on them.

A record comes from a JSON file that a crash, a full disk, another tool or a person may have damaged: a field
of the wrong type, a NaN metric, a run folder deleted or a run.json garbled under a live index. ``inspect``
turns such a record into a safe one with status ``damaged`` and the reason, so one bad run never takes a
listing, an export or the dashboard down with it, and its numbers are never reported as results.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

from amltui.app.fsutil import read_json


class Status(StrEnum):
    """The status of a run. ``stalled`` and ``orphaned`` come from the liveness and scheduler checks
    (amltui/app/executors/liveness.py); ``damaged`` is never written: it marks a record that cannot be read."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STALLED = "stalled"
    ORPHANED = "orphaned"
    DAMAGED = "damaged"


DAMAGED = Status.DAMAGED
# Every status amltui writes. A new status must be added here, or its runs are shown as damaged.
STATUSES = tuple(s for s in Status if s is not Status.DAMAGED)
TERMINAL = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED})
WORKING = frozenset({Status.RUNNING, Status.STALLED})  # a worker owns the run (or did, until it is found gone)
LIVE = frozenset({Status.QUEUED, *WORKING, Status.ORPHANED})  # not finished: can be cancelled
REPAIR_HINT = "`amltui store rebuild` re-reads the run folders; `amltui rm RUN` deletes the run"

# A Slurm job id: 123, an array task 123_4, a het-job part 123+1, optionally a step (.0, .batch).
SLURM_JOB_ID = re.compile(r"[0-9]{1,20}(_[0-9]{1,10}|\+[0-9]{1,4})?(\.[0-9A-Za-z]{1,16})?")

_INT_FIELDS = ("epoch", "epochs", "seed")
_OPTIONAL_INT_FIELDS = ("pid", "resumes", "n_train", "n_test")
_TEXT_FIELDS = ("variant", "dataset", "preset", "arch", "error", "traceback", "host", "slot", "device",
                "executor", "started", "ended", "updated", "fingerprint", "code_version")
_DICT_FIELDS = ("last", "metrics_n", "config", "config_diff")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def record_problems(record: dict[str, Any]) -> list[str]:
    """What is wrong with the fields of a record (empty when nothing is)."""
    problems: list[str] = []
    status = record.get("status")
    if status not in STATUSES:
        problems.append(f"status is {status!r}, expected one of {', '.join(STATUSES)}")
    for key in _INT_FIELDS:
        if key in record and not (_is_int(record[key]) and record[key] >= (0 if key != "seed" else -2**63)):
            problems.append(f"{key} is {record[key]!r}, expected a whole number")
    for key in _OPTIONAL_INT_FIELDS:
        if record.get(key) is not None and not (_is_int(record[key]) and record[key] >= 0):
            problems.append(f"{key} is {record[key]!r}, expected a whole number or null")
    for key in _TEXT_FIELDS:
        if record.get(key) is not None and not isinstance(record[key], str):
            problems.append(f"{key} is {record[key]!r}, expected text or null")
    for key in _DICT_FIELDS:
        if record.get(key) is not None and not isinstance(record[key], dict):
            problems.append(f"{key} is {record[key]!r}, expected an object")
    metrics = record.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, dict):
            problems.append(f"metrics is {metrics!r}, expected an object of numbers")
        else:
            problems += [f"metric {k} is {v!r}, expected a finite number" for k, v in metrics.items()
                         if not _finite(v)]
    job = record.get("slurm_job_id")
    if job is not None and not (isinstance(job, str | int) and not isinstance(job, bool)
                                and SLURM_JOB_ID.fullmatch(str(job))):
        problems.append(f"slurm_job_id is {job!r}, which is not a Slurm job id")
    return problems


def folder_problem(runs_dir: Path, run_id: str, *, read: bool = True) -> str | None:
    """Why the run's folder cannot back its record (gone, a symlink, run.json unreadable), or None.

    ``read=False`` only looks at the folder itself (for the dashboard, which polls often).
    """
    folder = Path(runs_dir) / run_id
    if folder.is_symlink():
        return f"its folder {folder} is a symbolic link (amltui only uses real run folders)"
    if not folder.is_dir():
        return f"its folder {folder} is missing"
    if not read:
        return None
    try:
        data = read_json(folder / "run.json")
    except (OSError, ValueError) as exc:
        return f"its run.json is unreadable ({exc})"
    if not isinstance(data, dict):
        return f"its run.json holds a JSON {type(data).__name__}, not an object"
    if data.get("id") != run_id:
        return f"its run.json names another run ({data.get('id')!r})"
    return None


def _safe_copy(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every mistyped field replaced by an empty value of the right type."""
    safe = dict(record)
    for key in _INT_FIELDS:
        if key in safe and not _is_int(safe[key]):
            safe[key] = None if key == "seed" else 0
    for key in _OPTIONAL_INT_FIELDS:
        if safe.get(key) is not None and not _is_int(safe[key]):
            safe[key] = None
    for key in _TEXT_FIELDS:
        if safe.get(key) is not None and not isinstance(safe[key], str):
            safe[key] = str(safe[key])
    for key in _DICT_FIELDS:
        if safe.get(key) is not None and not isinstance(safe[key], dict):
            safe[key] = {}
    metrics = safe.get("metrics")
    safe["metrics"] = {k: v for k, v in metrics.items() if _finite(v)} if isinstance(metrics, dict) else {}
    job = safe.get("slurm_job_id")
    if job is not None and not SLURM_JOB_ID.fullmatch(str(job)):
        safe["slurm_job_id"] = None
    return safe


def inspect(record: dict[str, Any], runs_dir: Path | None = None, *, read_folder: bool = True) -> dict[str, Any]:
    """A record safe to show and count: a damaged one gets status "damaged", the reason in ``damaged`` and
    ``error``, the status it claimed in ``stored_status``, and no metric that is not a finite number.

    With ``runs_dir`` the run folder is checked too (missing, a symlink, run.json unreadable unless
    ``read_folder`` is false).
    """
    problems = record_problems(record)
    if runs_dir is not None and isinstance(record.get("id"), str):
        where = folder_problem(runs_dir, record["id"], read=read_folder)
        if where:
            problems.insert(0, where)
    if record.get(DAMAGED) and not problems:  # marked by `store rebuild`
        problems.append(str(record[DAMAGED]))
    if not problems:
        return record
    safe = _safe_copy(record)
    reason = "; ".join(problems)
    safe.update(status=DAMAGED, stored_status=record.get("status"), damaged=reason, error=reason)
    return safe


def inspect_all(records: Iterable[dict[str, Any]], runs_dir: Path | None = None) -> list[dict[str, Any]]:
    return [inspect(r, runs_dir) for r in records]


def damaged(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == DAMAGED]


def unindexed_folders(runs_dir: Path, known: Iterable[str]) -> list[str]:
    """Names of folders holding a run.json that the index does not list (the index lost them)."""
    ids = set(known)
    try:
        entries = sorted(Path(runs_dir).iterdir())
    except OSError:
        return []
    return [p.name for p in entries if p.name not in ids and not p.is_symlink() and (p / "run.json").is_file()]
