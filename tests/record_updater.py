"""One of several processes changing the same run record at once (tests/app/test_update_record.py).

Usage: python tests/record_updater.py RUNS_DIR RUN_ID ROLE N PARTIES

Waits until PARTIES updaters are ready (files in RUNS_DIR/barrier), so they really overlap, then makes N changes
as ROLE, each through amltui's ordinary writers, and each also appending its number to the field ``<ROLE>_seen``:
a lost update shows as a missing number there.
- worker:    progress of a training run (epoch, last, gpu_peak_mib), as amltui.app.science.execution.execute writes it;
- scheduler: status changes (running <-> stalled) through set_status, as the liveness check makes them;
- slurm:     the Slurm submit's fields (slurm_job_id, submitted) through change_record, and one cancel request.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from amltui.app.runs.records import Status, now
from amltui.app.runs.states import change_record, request_cancel, set_status
from amltui.app.runs.store import Store, update_record

CANCEL_REASON = "cancelled by the concurrency test"


def barrier(folder: Path, role: str, parties: int) -> None:
    folder.mkdir(exist_ok=True)
    (folder / role).write_text("ready")
    deadline = time.monotonic() + 120
    while len(list(folder.iterdir())) < parties:
        if time.monotonic() > deadline:
            sys.exit(f"{role}: the other updaters never became ready")
        time.sleep(0.005)


def main() -> None:
    runs_dir, run_id, role, n, parties = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(
        sys.argv[5])
    store = Store(runs_dir)
    barrier(runs_dir / "barrier", role, parties)
    key = f"{role}_seen"
    for i in range(n):
        if role == "worker":
            update_record(store, run_id, lambda r, i=i: r.update(
                epoch=i, last={"epoch": i}, gpu_peak_mib=max(float(i), r.get("gpu_peak_mib") or 0.0),
                **{key: [*r.get(key, []), i]}))
        elif role == "scheduler":
            status = Status.STALLED if i % 2 == 0 else Status.RUNNING
            assert set_status(store, run_id, status, expect=(Status.RUNNING, Status.STALLED), stall=f"note {i}")
            update_record(store, run_id, lambda r, i=i: r.update(**{key: [*r.get(key, []), i]}))
        elif role == "slurm":
            change_record(store, run_id, slurm_job_id=str(1000 + i), submitted=now())
            update_record(store, run_id, lambda r, i=i: r.update(**{key: [*r.get(key, []), i]}))
            if i == n // 2:
                assert request_cancel(store, run_id, CANCEL_REASON) is not None
        else:
            sys.exit(f"unknown role {role}")


if __name__ == "__main__":
    main()
