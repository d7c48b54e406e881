"""Starting and stopping runs without any UI: shared by the CLI and the dashboard.

Functions return a message for the user and raise ValueError for what the user must fix.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from amltui.launch.liveness import reap
from amltui.launch.local import Slot, default_cpu_slots, detect_gpus, make_slots, parse_gpus, start_detached
from amltui.live import TERMINAL
from amltui.runs import set_status
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
    """Cancel a queued or running run (local worker: SIGTERM; Slurm: scancel); returns what happened."""
    run_id, status = record["id"], record.get("status")
    if status in TERMINAL:
        return f"already {status}"
    if record.get("executor") == "slurm" and record.get("slurm_job_id"):
        from amltui.launch.slurm import SlurmExecutor

        SlurmExecutor(store.runs_dir).cancel(run_id)
        return f"Slurm job {record['slurm_job_id']} cancelled"
    if status == "queued" and set_status(store, run_id, "cancelled", expect=("queued",),
                                         error="cancelled before it started"):
        return "cancelled (was queued)"
    pid, host = record.get("pid"), record.get("host")
    if not pid:
        return "is starting; try again in a moment"
    if host != socket.gethostname():
        return f"runs on host {host}; cancel it there"
    try:
        os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        reap(store)
        return "its worker was already gone; marked failed (lost)"
    return f"sent SIGTERM to worker pid {pid}; it records itself cancelled"
