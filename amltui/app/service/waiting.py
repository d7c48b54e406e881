"""What a queued run waits for (`amltui logs` of a run that has no log yet)."""

from __future__ import annotations

from typing import Any

from amltui.app.runs.owners import scheduler_claims
from amltui.app.runs.records import Status
from amltui.app.runs.store import Store


def queued_reason(store: Store, record: dict[str, Any]) -> str | None:
    """One sentence: the run is queued (or orphaned), and what has to happen before it starts; None for a run
    that has started."""
    if record.get("status") == Status.ORPHANED:
        return f"{record['id']} is orphaned: {record.get('error') or 'its scheduler ended before starting it'}"
    if record.get("status") != Status.QUEUED:
        return None
    run_id, job = record["id"], record.get("slurm_job_id")
    if record.get("executor") == "slurm" and job:
        return (f"{run_id} is queued as Slurm job {job}: it starts when Slurm runs the job (`squeue -j {job}` says "
                "why it waits); its log begins then")
    live = [data for _, data, alive in scheduler_claims(store.runs_dir) if alive and run_id in data["runs"]]
    if not live:
        return (f"{run_id} is queued but no scheduler holds it, so nothing will start it: `amltui cancel {run_id}`, "
                f"then `amltui resume {run_id}`")
    mates = [store.get(i) or {} for i in live[0]["runs"] if isinstance(i, str)]
    running = sum(1 for r in mates if r.get("status") == Status.RUNNING)
    waiting = sum(1 for r in mates if r.get("status") == Status.QUEUED)
    pid = live[0].get("pid")
    return (f"{run_id} is queued: it waits for a free slot of its scheduler{f' (pid {pid})' if pid else ''}, which "
            f"has {running} run(s) running and {waiting} queued; its log begins when it starts")
