"""Status changes of a run: each one a locked read-modify-write of its record (store.update_record).

Who may change what: a scheduler claims a queued run (set_status with ``expect``), a user requests a cancel
(request_cancel, before any signal), resume queues a finished run again (requeue). The worker's own writes
are in amltui/app/science/execution.py.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from amltui.app.runs.folders import RunDir, run_dir
from amltui.app.runs.records import RESUMABLE, TERMINAL, WORKING, Status, now
from amltui.app.runs.store import SKIP, Store, Unchanged, update_record


def save_record(store: Store, rd: RunDir, record: dict[str, Any]) -> dict[str, Any]:
    """Replace a run's whole record (tests and tools that build one); a cancel requested meanwhile is kept.

    The run's own code changes records field by field with update_record instead.
    """
    def replace(current: dict[str, Any]) -> dict[str, Any]:
        if current.get("cancel_requested") and not record.get("cancel_requested"):
            record["cancel_requested"] = current["cancel_requested"]
        return dict(record)

    saved = update_record(store, rd.id, replace)
    assert saved is not None
    record["updated"] = saved["updated"]
    return record


def change_record(store: Store, run_id: str, **fields: Any) -> dict[str, Any]:
    """Set these fields of a run's record, whatever else it holds (update_record with a plain dict)."""
    saved = update_record(store, run_id, lambda record: record.update(fields))
    assert saved is not None
    return saved


def request_cancel(store: Store, run_id: str, reason: str) -> dict[str, Any] | None:
    """Write a cancel request into a running (or stalled) run's record, before any signal is sent.

    The worker honours it at its next safe point even if no signal reaches it (no pid yet, another host), and
    the liveness check turns a worker that died with a pending request into "cancelled". Returns the record,
    or None if the run was not running (then there is nothing to stop).
    """
    def request(record: dict[str, Any]) -> Unchanged | None:
        if record.get("status") not in WORKING:
            return SKIP
        record["cancel_requested"] = record.get("cancel_requested") or reason  # the first reason stands
        return None

    record = update_record(store, run_id, request)
    if record is not None:
        run_dir(store.runs_dir, run_id).log(f"cancel requested: {reason}")
    return record


def set_status(store: Store, run_id: str, status: str, *, expect: Collection[str] | None = None,
               worker_pid: int | None = None, **fields: Any) -> dict[str, Any] | None:
    """Change a run's status (and fields) if it currently has one of ``expect``; None if it had not.

    A locked read-modify-write (update_record), so a scheduler claiming a queued run and a user cancelling it
    cannot both win. With ``worker_pid`` the change applies only while that worker owns the run.
    """
    def change(record: dict[str, Any]) -> Unchanged | None:
        if expect is not None and record.get("status") not in expect:
            return SKIP
        if worker_pid is not None and record.get("pid") not in (None, worker_pid):
            return SKIP  # the run has moved on to another worker (e.g. it was resumed)
        record.update(status=status, **fields)
        if status in TERMINAL and not record.get("ended"):
            record["ended"] = now()
        return None

    record = update_record(store, run_id, change)
    if record is not None and fields.get("error"):
        run_dir(store.runs_dir, run_id).log(f"{status}: {fields['error']}")
    return record


def requeue(store: Store, run_id: str) -> dict[str, Any] | None:
    """Queue a failed, cancelled or orphaned run again, to continue from its checkpoint; None otherwise."""
    def again(record: dict[str, Any]) -> Unchanged | None:
        if record.get("status") not in RESUMABLE:
            return SKIP
        # An orphaned run never started: queueing it again is not a resume.
        resumes = record.get("resumes", 0) + (record.get("status") != Status.ORPHANED)
        record.update(status=Status.QUEUED, error=None, ended=None, resumes=resumes, cancel_requested=None,
                      stall=None)
        return None

    return update_record(store, run_id, again)
