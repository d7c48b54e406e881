"""Starting and stopping runs without any UI: shared by the CLI and the dashboard.

Functions return a message for the user and raise ValueError for what the user must fix.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from amltui.launch.liveness import ORPHANED, STALLED, reap
from amltui.launch.local import Slot, default_cpu_slots, detect_gpus, make_slots, parse_gpus, start_detached
from amltui.live import TERMINAL
from amltui.runs import request_cancel, set_status
from amltui.store import Store


def local_slots(gpus: str | None, slots_per_gpu: int = 1, cpu_slots: int | None = None) -> list[Slot]:
    """The slots for ``--gpus`` (None: detect) × ``--slots-per-gpu``, or CPU slots."""
    gpu_list = parse_gpus(gpus)
    gpu_list = detect_gpus() if gpu_list is None else gpu_list
    return make_slots(gpu_list, slots_per_gpu, cpu_slots or default_cpu_slots())


def start_local(store: Store, ids: list[str], *, gpus: str | None = None, slots_per_gpu: int = 1,
                cpu_slots: int | None = None) -> str:
    """Hand queued runs to a background scheduler on this machine; it outlives the caller."""
    slots = local_slots(gpus, slots_per_gpu, cpu_slots)
    gpu_list = sorted({int(s.gpu) for s in slots if s.gpu})
    proc = start_detached(store.runs_dir, ids, gpu_list, slots_per_gpu, cpu_slots or default_cpu_slots())
    return (f"started scheduler pid {proc.pid} on slots {', '.join(s.name for s in slots)}; follow with "
            f"`amltui ls` or `amltui logs RUN -f` (log: {store.runs_dir / 'scheduler.log'})")


def cancel_run(store: Store, record: dict[str, Any]) -> str:
    """Cancel a queued, orphaned, running or stalled run (Slurm: scancel); returns what happened.

    For a running run the request is written into its record first, then the worker gets SIGTERM: a worker
    that has no pid yet, cannot be signalled from here, or dies before it can answer still ends "cancelled".
    """
    run_id, status = record["id"], record.get("status")
    if status in TERMINAL:
        return f"already {status}"
    if record.get("executor") == "slurm" and record.get("slurm_job_id"):
        from amltui.launch.slurm import SlurmExecutor

        SlurmExecutor(store.runs_dir).cancel(run_id)
        return f"Slurm job {record['slurm_job_id']} cancelled"
    if status in ("queued", ORPHANED) and set_status(store, run_id, "cancelled", expect=("queued", ORPHANED),
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
    try:
        os.kill(int(pid), signal.SIGTERM)
        if current.get("status") == STALLED:
            os.kill(int(pid), signal.SIGCONT)  # a paused worker must wake up to stop
    except ProcessLookupError:
        reap(store)
        return f"its worker was already gone; marked {(store.get(run_id) or {}).get('status')}"
    return f"sent SIGTERM to worker pid {pid}; it stops at its next safe point and records itself cancelled"
