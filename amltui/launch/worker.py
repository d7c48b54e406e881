"""The worker process of one run: ``python -m amltui.launch.worker --runs-dir DIR RUN_ID [--resume]``.

It executes the run (amltui.runs.execute), touches ``<run>/heartbeat`` every few seconds so a dead worker is
noticed (amltui.launch.liveness), writes throttled progress to ``<run>/progress.json`` for the CLI and the
dashboard, and turns SIGTERM (cancel, scancel) into a clean "cancelled" record.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from amltui.fsutil import atomic_write_json
from amltui.runs import execute, run_dir
from amltui.store import Store

HEARTBEAT_SECONDS = 2.0
PROGRESS_SECONDS = 0.5
EXIT_DONE, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 130


class Cancelled(KeyboardInterrupt):
    """Raised in the main thread when the worker is asked to stop (SIGTERM / SIGINT)."""


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            path.touch()
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
    """Execute one run in this process; returns the exit code (0 done, 1 failed, 130 cancelled)."""
    store = Store(Path(runs_dir))
    rd = run_dir(store.runs_dir, run_id)

    def on_signal(signum: int, frame: object) -> None:
        raise Cancelled(f"stopped by signal {signal.Signals(signum).name}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(rd.path / "heartbeat", stop), daemon=True)
    beat.start()
    try:
        execute(store, run_id, resume=resume, listener=ProgressWriter(rd.path / "progress.json"))
        return EXIT_DONE
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    except Exception:  # recorded in the run (status failed, error, traceback) by execute
        return EXIT_FAILED
    finally:
        stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amltui.launch.worker", description=__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--runs-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_worker(args.runs_dir, args.run_id, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
