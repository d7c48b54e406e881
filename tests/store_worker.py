"""Subprocess helper for tests/app/test_store.py: real processes hammering one store.

Usage: python tests/store_worker.py COMMAND RUNS_DIR [ARGS...]
  update RUNS_DIR K N GO_FILE   wait for GO_FILE, then N times: shared["count"] += 1, p<K>["values"].append(i)
  writeloop RUNS_DIR PREFIX     forever: add PREFIX-<i>, rewrite a big shared record, print PREFIX-<i>;
                                prints "ready" after the first round
  read RUNS_DIR STOP_FILE       read (Store.all() and the raw file, without retry) until STOP_FILE exists;
                                prints "reads N"; exits 1 at the first error or if the run count ever drops
  hold-lock RUNS_DIR            take the store's lock, print "locked <pid>", sleep until killed
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amltui.app.runs.store import Store  # noqa: E402


def _wait_for(path: Path) -> None:
    while not path.exists():
        time.sleep(0.005)


def update(runs_dir: Path, k: int, n: int, go: Path) -> None:
    store = Store(runs_dir)
    _wait_for(go)
    for i in range(n):
        store._update("shared", lambda r: {**r, "count": r["count"] + 1})
        store._update(f"p{k}", lambda r, i=i: {**r, "values": r["values"] + [i]})


def writeloop(runs_dir: Path, prefix: str) -> None:
    store = Store(runs_dir)
    payload = "x" * 20_000  # makes each write long enough for kills to land inside it
    i = 0
    while True:
        store._add({"id": f"{prefix}-{i}", "status": "queued", "created": time.time()})
        store._put({"id": "big", "payload": payload, "writer": prefix, "i": i})
        print(f"{prefix}-{i}", flush=True)
        if i == 0:
            print("ready", flush=True)
        i += 1


def read(runs_dir: Path, stop: Path) -> int:
    store = Store(runs_dir)
    reads, most = 0, 0
    while not stop.exists():
        try:
            count = len(store.all())
            raw = json.loads(store.path.read_bytes())  # no retry here: a torn file would fail right away
            raw_count = len(raw["runs"])
        except Exception as e:  # report any failure to the test, with its type
            print(f"error after {reads} reads: {type(e).__name__}: {e}", flush=True)
            return 1
        if min(count, raw_count) < most:
            print(f"error: run count dropped from {most} to {min(count, raw_count)}", flush=True)
            return 1
        most = max(count, raw_count)
        reads += 1
        if reads % 10 == 0:  # progress the test waits on
            print(f"reads {reads}", flush=True)
    print(f"reads {reads}", flush=True)
    return 0


def hold_lock(runs_dir: Path) -> None:
    with Store(runs_dir).lock():
        print(f"locked {os.getpid()}", flush=True)
        while True:
            time.sleep(1)


def main(argv: list[str]) -> int:
    command, runs_dir = argv[0], Path(argv[1])
    if command == "update":
        update(runs_dir, int(argv[2]), int(argv[3]), Path(argv[4]))
    elif command == "writeloop":
        writeloop(runs_dir, argv[2])
    elif command == "read":
        return read(runs_dir, Path(argv[2]))
    elif command == "hold-lock":
        hold_lock(runs_dir)
    else:
        print(f"unknown command {command!r}; see the docstring of {__file__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
