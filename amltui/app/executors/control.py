"""Starting and stopping runs without any UI: shared by the CLI and the dashboard.

Functions return a message for the user and raise ValueError for what the user must fix.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from amltui.app.executors.liveness import pid_alive, reap
from amltui.app.executors.local import start_detached
from amltui.app.executors.slots import Slot, default_cpu_slots, local_plan
from amltui.app.executors.slurm import SlurmExecutor
from amltui.app.runs.folders import run_dir
from amltui.app.runs.owners import WORKER_LOCK, worker_alive, worker_proof
from amltui.app.runs.records import LIVE, TERMINAL, UNSTARTED, Status
from amltui.app.runs.states import request_cancel, set_status
from amltui.app.runs.store import Store


def start_local(store: Store, ids: list[str], *, gpus: str | None = None, slots_per_gpu: str | int = 1,
                cpu_slots: int | None = None, gpu_max_util: float | None = None,
                gpu_max_mem: float | None = None) -> str:
    """Hand queued runs to a background scheduler on this machine; it outlives the caller."""
    plan = local_plan(gpus, slots_per_gpu, cpu_slots, store=store, gpu_max_util=gpu_max_util,
                      gpu_max_mem=gpu_max_mem)
    proc = start_detached(store.runs_dir, ids, gpus, slots_per_gpu, cpu_slots or default_cpu_slots(),
                          gpu_max_util, gpu_max_mem)
    notes = "".join(f"\nnote: {n}" for n in plan.notes)
    return (f"started scheduler pid {proc.pid} on slots {_names(plan.slots)}; follow with "
            f"`amltui ls` or `amltui logs RUN -f` (log: {store.runs_dir / 'scheduler.log'})" + notes)


def _names(slots: list[Slot]) -> str:
    """gpu0#0..#7 shown as 'gpu0 ×8'."""
    counts: dict[str, int] = {}
    for s in slots:
        base = s.name.split("#")[0]
        counts[base] = counts.get(base, 0) + 1
    return ", ".join(name + (f" ×{n}" if n > 1 else "") for name, n in counts.items())




def cancel_run(store: Store, record: dict[str, Any]) -> str:
    """Cancel a queued, orphaned, running or stalled run (Slurm: scancel); returns what happened.

    For a running run the request is written into its record first, then the worker gets SIGTERM: a worker
    that has no pid yet, cannot be signalled from here, or dies before it can answer still ends "cancelled".
    """
    run_id, status = record["id"], record.get("status")
    if status in TERMINAL:
        return f"already {status}"
    if record.get("executor") == "slurm" and record.get("slurm_job_id"):
        SlurmExecutor(store.runs_dir).cancel(run_id)
        return f"Slurm job {record['slurm_job_id']} cancelled"
    if status in UNSTARTED and set_status(store, run_id, Status.CANCELLED, expect=UNSTARTED,
                                          error="cancelled before it started"):
        return f"cancelled (was {status})"
    current = request_cancel(store, run_id, "cancelled with `amltui cancel`")
    if current is None:
        now_status = (store.get(run_id) or {}).get("status")
        return f"already {now_status}" if now_status in TERMINAL else f"is {now_status}; try again"
    pid, host = current.get("pid"), current.get("host")
    if not pid:
        return "cancel recorded; the worker is starting and stops as soon as it looks (before any training)"
    if host != socket.gethostname():
        return f"cancel recorded; the worker on host {host} stops at its next check (within a second or so)"
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return _not_signalled(store, run_id, pid, "it is not a process id")
    if not pid_alive(pid):
        reap(store)
        return f"its worker was already gone; marked {(store.get(run_id) or {}).get('status')}"
    started = current.get("pid_start")
    proof = worker_proof(run_dir(store.runs_dir, run_id).path, pid, started if isinstance(started, int) else None)
    if proof is None:
        return _not_signalled(store, run_id, pid, f"nothing proves it is this run's worker (it does not hold "
                              f"{WORKER_LOCK}, and its start time does not match the one recorded at spawn)")
    try:
        os.kill(pid, signal.SIGTERM)
        if current.get("status") == Status.STALLED:
            os.kill(pid, signal.SIGCONT)  # a paused worker must wake up to stop
    except ProcessLookupError:
        reap(store)
        return f"its worker was already gone; marked {(store.get(run_id) or {}).get('status')}"
    return f"sent SIGTERM to worker pid {pid} ({proof}); it stops at its next safe point and records itself cancelled"


def _not_signalled(store: Store, run_id: str, pid: Any, why: str) -> str:
    """The record names a pid that is not provably the run's worker: signal nobody. With no worker holding the
    run (its lock free), nothing can record the cancel, so the run is marked cancelled here; a worker that does
    hold it (not the recorded pid) sees the recorded request at its next safe point."""
    rd = run_dir(store.runs_dir, run_id)
    note = f"did not signal pid {pid}: {why}"
    rd.log(f"cancel: {note}")
    if worker_alive(rd.path):
        return f"cancel recorded; {note}; the worker that holds the run stops at its next safe point"
    marked = set_status(store, run_id, Status.CANCELLED, expect=LIVE, pid=None,
                        error=f"cancelled with `amltui cancel`; worker not found ({note})")
    state = "marked cancelled" if marked else f"now {(store.get(run_id) or {}).get('status')}"
    return f"{note}; no worker holds the run, so it is {state}"
