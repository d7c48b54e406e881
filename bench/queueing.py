"""Queueing throughput: runs/s that `amltui run` queues (folders, config.json, run.json and the index).

batch     amltui.app.runs.folders.create_runs, what `amltui run` / `reproduce` use: every folder, then one index write.
one-by-one  create_run per run (one index rewrite per run, as before issue 12): the index grows, so this is
          quadratic in the number of runs.
cli       the whole `amltui run --detach`-free path up to the queue: `run` is given a fake dispatch, so the
          figure includes config resolution and the CLI, not any training.

    PYTHONPATH=. .venv/bin/python bench/queueing.py            # 40 and 500 runs (target: >= 100 runs/s queued)
    PYTHONPATH=. .venv/bin/python bench/queueing.py --runs 200
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

from amltui.app.runs.folders import create_run, create_runs
from amltui.app.runs.store import Store
from core.config import RunConfig


def configs(n: int) -> list[RunConfig]:
    return [RunConfig.resolve("ml_sa", "quick", seed=s, dataset="synthetic") for s in range(n)]


def time_batch(n: int) -> float:
    cfgs = configs(n)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        start = time.perf_counter()
        create_runs(store, cfgs)
        elapsed = time.perf_counter() - start
        assert len(store.all()) == n
    return elapsed


def time_one_by_one(n: int) -> float:
    cfgs = configs(n)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        start = time.perf_counter()
        for config in cfgs:
            create_run(store, config)
        elapsed = time.perf_counter() - start
        assert len(store.all()) == n
    return elapsed


def time_cli(n: int) -> float:
    from typer.testing import CliRunner

    from amltui.cli import app

    with tempfile.TemporaryDirectory() as tmp, mock.patch("amltui.cli.lifecycle.dispatch"):
        start = time.perf_counter()
        seeds = ",".join(map(str, range(n)))
        result = CliRunner().invoke(app, ["run", "--dataset", "synthetic", "--seeds", seeds, "--runs-dir", tmp])
        elapsed = time.perf_counter() - start
        assert result.exit_code == 0, result.output
        assert len(Store(Path(tmp)).all()) == n
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="*", default=[40, 500])
    args = parser.parse_args()
    print(f"{'runs':>5} {'batch runs/s':>13} {'cli runs/s':>11} {'one-by-one runs/s':>18} {'batch / one-by-one':>19}")
    for n in args.runs:
        batch, cli, single = time_batch(n), time_cli(n), time_one_by_one(n)
        print(f"{n:>5} {n / batch:>13.0f} {n / cli:>11.0f} {n / single:>18.0f} {single / batch:>18.1f}x")


if __name__ == "__main__":
    main()
