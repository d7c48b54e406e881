"""The worker process of one run: ``python -m amltui.app.science.worker --runs-dir DIR RUN_ID [--resume]``.

It takes the run folder's lock (one worker per run, amltui.app.runs.owners), executes the run
(amltui.app.science.execution.execute), touches ``<run>/heartbeat`` every few seconds so a dead or paused worker
is noticed (amltui.app.executors.liveness), and writes throttled progress to ``<run>/progress.json`` for the CLI
and the dashboard. SIGTERM / SIGINT (cancel, scancel, Ctrl-C) only set a flag that the run checks at safe points
(amltui.app.science.safepoint), so a cancel at any moment ends as a clean "cancelled" record.
"""

from __future__ import annotations

import os
import sys

from amltui.app.science import safepoint

if __name__ == "__main__":
    # As early as possible: a cancel that arrives while the modules below load must not kill the worker.
    if os.environ.get(safepoint.HOLD_ENV) == "spawn":  # tests: a worker that has no handler yet
        safepoint.hold_here(os.environ["AMLTUI_TEST_HOLD_DIR"], "spawn")
    safepoint.install()

import argparse  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from amltui.app.fsutil import atomic_write_json, touch  # noqa: E402
from amltui.app.runs.folders import run_dir
from amltui.app.runs.owners import RunBusy, worker_lock  # noqa: E402
from amltui.app.runs.records import now
from amltui.app.runs.store import Store  # noqa: E402
from amltui.app.science.execution import execute  # noqa: E402
from amltui.app.science.safepoint import Cancelled, SafePoints  # noqa: E402

HEARTBEAT_SECONDS = 2.0
PROGRESS_SECONDS = 0.5
EXIT_DONE, EXIT_FAILED, EXIT_BUSY, EXIT_CANCELLED = 0, 1, 3, 130

__all__ = ["Cancelled", "EXIT_BUSY", "EXIT_CANCELLED", "EXIT_DONE", "EXIT_FAILED", "run_worker"]


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            touch(path)  # never through a planted link
        except OSError:
            pass  # the run folder may be removed under us (amltui rm); the main thread will notice
        stop.wait(HEARTBEAT_SECONDS)


class ProgressWriter:
    """Keeps the latest event of each kind in progress.json, at most every PROGRESS_SECONDS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: dict[str, Any] = {}
        self.last_write = 0.0

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.state[kind] = data
        self.state["kind"] = kind
        now = time.monotonic()
        # Epoch ends and the last step of anything are always written; batches are throttled.
        final = kind == "epoch" or data.get("done") == data.get("total") or data.get("step") == data.get("steps")
        if final or now - self.last_write >= PROGRESS_SECONDS:
            self.last_write = now
            try:
                atomic_write_json(self.path, {"time": time.time(), **self.state})
            except OSError:
                pass


def run_worker(runs_dir: Path, run_id: str, *, resume: bool = False) -> int:
    """Execute one run in this process; returns the exit code (0 done, 1 failed, 3 busy, 130 cancelled)."""
    if threading.current_thread() is threading.main_thread() and not safepoint.installed():
        safepoint.install()  # the Slurm job installs its own (naming the job) before calling this
    store = Store(Path(runs_dir))
    rd = run_dir(store.runs_dir, run_id)
    try:
        owner = worker_lock(rd.path)  # held until this process ends
    except RunBusy as exc:
        print(f"{now()} worker pid {os.getpid()}: {exc}", file=sys.stderr, flush=True)
        return EXIT_BUSY
    safe = SafePoints(rd.path, lambda: rd.read_record().get("cancel_requested"))
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(rd.path / "heartbeat", stop), daemon=True)
    beat.start()
    try:
        execute(store, run_id, resume=resume, listener=ProgressWriter(rd.path / "progress.json"), safe=safe)
        return EXIT_DONE
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    except Exception:  # recorded in the run (status failed, error, traceback) by execute
        return EXIT_FAILED
    finally:
        stop.set()
        owner.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amltui.app.science.worker", description=__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--runs-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_worker(args.runs_dir, args.run_id, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
