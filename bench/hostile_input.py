"""Times two commands issue 23 found slow on big inputs (seconds as seen; not a test, the machine decides them):
`show` of a run whose metrics.jsonl has 200,000 lines, and `tag` of 200 runs in a 2,000-run index.

    python bench/hostile_input.py [--runs N] [--tagged N] [--lines N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amltui.app.fsutil import atomic_write_json
from amltui.app.runs.records import now
from amltui.app.runs.store import RUNS_TABLE, AtomicJSONStorage

ROOT = Path(__file__).resolve().parent.parent


def make_index(runs: Path, n: int) -> list[str]:
    """n finished runs (run.json and the index) written directly: building them through amltui would take long."""
    ids, table = [], {}
    for i in range(n):
        run_id = f"r{i:05d}"
        record = {"id": run_id, "status": "done", "variant": "baseline", "seed": i, "dataset": "synthetic",
                  "preset": "quick", "created": now(), "epoch": 2, "epochs": 2, "tags": [],
                  "metrics": {"A_orig": 90.0, "A_SA": 40.0}}
        (runs / run_id).mkdir(parents=True)
        atomic_write_json(runs / run_id / "run.json", record, durable=False)
        table[str(i + 1)] = record
        ids.append(run_id)
    AtomicJSONStorage(runs / "store.json").write({RUNS_TABLE: table})
    return ids


def timed(*args: str, runs: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "amltui", *args, "--runs-dir", str(runs)], capture_output=True,
                          text=True, cwd=ROOT)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--tagged", type=int, default=200)
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        ids = make_index(runs, args.runs)
        line = {"kind": "epoch", "train_loss": 0.5, "monitor_A_orig": 90.0, "seconds": 1.0}
        with (runs / ids[0] / "metrics.jsonl").open("w") as fh:
            fh.writelines(json.dumps({**line, "epoch": e}) + "\n" for e in range(1, args.lines + 1))
        base = timed("ls", "--status", "queued", runs=runs)  # for scale: start-up, the index, every run folder
        show = timed("show", ids[0], runs=runs)
        tag = timed("tag", *ids[:args.tagged], "bench", runs=runs)
    print(f"index of {args.runs} runs; `ls --status queued` (checks every run folder): {base:.2f} s")
    print(f"show of a run with a {args.lines}-line metrics.jsonl: {show:.2f} s")
    print(f"tag of {args.tagged} runs: {tag:.2f} s")


if __name__ == "__main__":
    main()
