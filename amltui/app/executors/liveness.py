"""Noticing dead, paused and stranded runs, so that no record says "running" or "queued" forever.

A local worker owns its run folder through an flock (amltui.app.runs.owners). On this host:
- the lock is free and the worker process is gone → the run is lost: ``failed``, or ``cancelled`` when a cancel
  had been requested (the worker died before it could record it);
- the lock is held but the heartbeat (touched every 2 s) is older than STALE_SECONDS → ``stalled`` (paused with
  SIGSTOP, a suspended laptop, an I/O hang): never failed, and it turns ``running`` again once it beats.
A run on another host (a shared filesystem) is judged by its heartbeat alone. Queued runs whose scheduler died
become ``orphaned``. Slurm runs are reconciled with Slurm itself (amltui.app.executors.slurm). An index that
still says live while run.json says the run ended (a crash between update_record's two writes) is repaired from
run.json.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from amltui.app.runs.folders import run_dir
from amltui.app.runs.owners import forget_claim, scheduler_claims, worker_alive
from amltui.app.runs.records import LIVE, TERMINAL, WORKING, Status, parse_time, record_problems
from amltui.app.runs.states import set_status
from amltui.app.runs.store import SKIP, Store, update_record

STALE_SECONDS = 20.0  # heartbeat silence after which a worker counts as stalled (it beats every 2 s)
STALLED, ORPHANED = Status.STALLED, Status.ORPHANED  # the names the CLI imported before records.Status


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def heartbeat_age(runs_dir: Path, run_id: str) -> float | None:
    """Seconds since the worker's last heartbeat, or None if it never beat."""
    try:
        # lstat: a link planted in its place must not lend the run another file's freshness
        return time.time() - (run_dir(runs_dir, run_id).path / "heartbeat").lstat().st_mtime
    except OSError:
        return None


def lost_reason(runs_dir: Path, record: dict[str, Any], stale_after: float = STALE_SECONDS) -> str | None:
    """Why a running local run is lost (its worker is gone), or None if a worker still owns it."""
    if record.get("status") not in WORKING or record.get("executor", "local") != "local":
        return None
    pid, host = record.get("pid"), record.get("host")
    age = heartbeat_age(runs_dir, record["id"])
    if host == socket.gethostname():
        if worker_alive(run_dir(runs_dir, record["id"]).path):
            return None  # the lock is held: alive, perhaps paused (see stall_state)
        if pid and not pid_alive(int(pid)):
            return f"lost: worker pid {pid} on {host} ended without reporting (killed?)"
        started = parse_time(record.get("started"))
        if pid and age is not None and age > stale_after and started and time.time() - started > stale_after:
            # Its pid lives but holds no lock and does not beat: a reused pid, or a worker that never took the run.
            return f"lost: worker pid {pid} on {host} holds no lock and has not beaten for {age:.0f} s"
        return None  # not started yet, or started and not yet holding the lock (a second or so)
    if age is not None and age > stale_after:
        return f"lost: no heartbeat from the worker (pid {pid} on {host}) for {age:.0f} s"
    return None


def stall_state(runs_dir: Path, record: dict[str, Any], stale_after: float = STALE_SECONDS) -> str | None:
    """"stalled" or "running" for a local run whose worker holds its lock on this host; None otherwise."""
    if record.get("status") not in WORKING or record.get("executor", "local") != "local":
        return None
    if record.get("host") != socket.gethostname() or not worker_alive(run_dir(runs_dir, record["id"]).path):
        return None
    age = heartbeat_age(runs_dir, record["id"])
    return STALLED if age is not None and age > stale_after else Status.RUNNING


def reap(store: Store, stale_after: float = STALE_SECONDS) -> list[str]:
    """Settle every run whose worker or scheduler is gone or paused; returns the ids changed.

    Cheap enough to call on every listing.
    """
    changed = []
    records = store.all()
    for record in records:
        try:
            changed += _reap_one(store, record, stale_after)
        except (OSError, ValueError, TypeError):
            # A damaged run (folder gone, run.json garbled, a mistyped pid, a full disk) is left as it is: the
            # readers show it as damaged, and one bad run must not stop every listing.
            continue
    try:
        changed += reap_orphans(store, records)
    except (OSError, ValueError, TypeError):
        pass  # an unreadable scheduler claim: the orphans are found on a later listing
    return changed


def settle_from_folder(store: Store, record: dict[str, Any]) -> bool:
    """Take run.json's record into the index when the index says the run is live but run.json says it ended
    and its worker is gone (a kill or a full disk between update_record's two writes). True if repaired.

    An index record with mistyped fields is left to `amltui store rebuild` (it is shown damaged meanwhile)."""
    if record.get("status") not in LIVE or record_problems(record) or not _worker_gone(store.runs_dir, record):
        return False
    # update_record re-reads run.json under the run's lock and puts it into the index, so the two agree again.
    return update_record(store, record["id"], lambda on_disk: None if on_disk.get("status") in TERMINAL
                         and on_disk.get("status") != record.get("status") else SKIP) is not None


def _worker_gone(runs_dir: Path, record: dict[str, Any]) -> bool:
    """No worker holds the run's lock, and the pid the record names is not alive on this host."""
    if worker_alive(run_dir(runs_dir, record["id"]).path):
        return False
    pid = record.get("pid")
    return not (record.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0 and pid_alive(pid))


def _reap_one(store: Store, record: dict[str, Any], stale_after: float) -> list[str]:
    run_id = record["id"]
    if settle_from_folder(store, record):
        return [run_id]
    reason = lost_reason(store.runs_dir, record, stale_after)
    if reason:
        requested = record.get("cancel_requested")
        status, error = (Status.CANCELLED, f"{requested} (the worker ended before recording it)") if requested \
            else (Status.FAILED, reason)
        return [run_id] if set_status(store, run_id, status, expect=WORKING, error=error, pid=None) else []
    state = stall_state(store.runs_dir, record, stale_after)
    if state is not None and state != record.get("status"):
        age = heartbeat_age(store.runs_dir, run_id) or 0.0
        note = (f"worker pid {record.get('pid')} holds the run but has not beaten for {age:.0f} s "
                "(paused or hung); `amltui cancel` stops it") if state == STALLED else None
        if set_status(store, run_id, state, expect=(record.get("status"),), stall=note):
            return [run_id]
    return []


def reap_orphans(store: Store, records: list[dict[str, Any]] | None = None) -> list[str]:
    """Mark ``orphaned`` the queued runs whose scheduler died before starting them."""
    claims = scheduler_claims(store.runs_dir)
    if not claims:
        return []
    alive = {run_id for _, data, live in claims if live for run_id in data["runs"]}
    queued = {r["id"] for r in (records if records is not None else store.all())
              if r.get("status") == Status.QUEUED and r.get("executor", "local") == "local"}
    changed = []
    for path, data, live in claims:
        if live:
            continue
        for run_id in data["runs"]:
            if run_id in queued and run_id not in alive and set_status(
                    store, run_id, ORPHANED, expect=(Status.QUEUED,),
                    error=f"its scheduler (pid {data.get('pid')} on {data.get('host')}) ended before starting it; "
                          f"`amltui resume {run_id}` queues and starts it again"):
                changed.append(run_id)
        forget_claim(path)
    return changed
