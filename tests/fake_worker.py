"""A stand-in worker for scheduler tests: records its slot's environment, then behaves as told.

Usage: python tests/fake_worker.py RUNS_DIR RUN_ID  (behaviour from the run's config "overrides" note:
the record field "fake" = "done" | "fail" | "kill" | "sleep"; "fake_seconds", "fake_barrier" as below)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from amltui.app.runs.states import set_status
from amltui.app.runs.store import Store

runs_dir, run_id = Path(sys.argv[1]), sys.argv[2]
store = Store(runs_dir)
record = store.get(run_id)
behaviour = record.get("fake", "done")
with open(runs_dir / "trace.jsonl", "a") as fh:
    fh.write(json.dumps({"run": run_id, "event": "start", "time": time.time(), "pid": os.getpid(),
                         "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "order": os.environ.get("CUDA_DEVICE_ORDER"),
                         "slot": os.environ.get("AMLTUI_SLOT")}) + "\n")
# "fake_barrier": N holds this worker until N workers have started, so overlap does not depend on speed.
deadline = time.monotonic() + 120
while time.monotonic() < deadline and sum('"start"' in line for line in
                                          (runs_dir / "trace.jsonl").read_text().splitlines()) < record.get(
                                              "fake_barrier", 0):
    time.sleep(0.02)
time.sleep(float(record.get("fake_seconds", 0)))  # a run that takes time: only where a test asks
with open(runs_dir / "trace.jsonl", "a") as fh:
    fh.write(json.dumps({"run": run_id, "event": "end", "time": time.time()}) + "\n")
if behaviour == "done":
    set_status(store, run_id, "done", metrics={"A_orig": 50.0})
    sys.exit(0)
if behaviour == "fail":
    set_status(store, run_id, "failed", error="RuntimeError: told to fail")
    sys.exit(1)
if behaviour == "kill":
    os.kill(os.getpid(), 9)
