"""Shared pieces of the reliability tests (issue 12): a runs folder of finished runs made without training,
the CLI through Typer's runner, and the check that a command ended cleanly (no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from amltui.app.runs import create_run, now, run_dir, save_record
from amltui.app.store import Store
from amltui.cli import app
from core.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, [str(a) for a in args], env=env)


def assert_clean(result: Any, code: int | None = None, *, stored_traceback: bool = False) -> str:
    """The command ended by itself (no exception escaped, no traceback printed); returns its output with
    runs of white space made single spaces (Rich wraps long lines at 80 columns here)."""
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"raised {exc!r}:\n{result.output}"
    if not stored_traceback:  # `show` prints a failed run's recorded traceback on purpose
        assert "Traceback" not in result.output, result.output
    if code is not None:
        assert result.exit_code == code, f"exit {result.exit_code}, expected {code}:\n{result.output}"
    return " ".join(result.output.split())


def make_runs(runs: Path, seeds: tuple[int, ...] = (0, 1, 2), variants: tuple[str, ...] = ("baseline",)) -> Store:
    """Finished synthetic runs b0, b1, … (variant baseline) with plausible metrics, without training."""
    store = Store(runs)
    configs, ids = [], []
    for variant in variants:
        for seed in seeds:
            configs.append(RunConfig.resolve(variant, "quick", seed=seed, dataset="synthetic", epochs=2))
            ids.append(f"{variant[0]}{seed}")
    for i, (config, run_id) in enumerate(zip(configs, ids, strict=True)):
        record = create_run(store, config, run_id)
        record.update(status="done", epoch=2, ended=now(), started=now(),
                      metrics={"A_orig": 90.0 + i, "A_SA": 40.0 + i}, metrics_n={"A_orig": 128, "A_SA": 128})
        save_record(store, run_dir(runs, record["id"]), record)
    return store


def edit_record(store: Store, run_id: str, folder_too: bool = True, **changes: Any) -> None:
    """Change a record as a person or another tool would: straight in the files, no checks."""
    data = json.loads(store.path.read_text())
    for doc in data["runs"].values():
        if doc["id"] == run_id:
            doc.update(changes)
    store.path.write_text(json.dumps(data))
    if folder_too:
        path = run_dir(store.runs_dir, run_id).record_file
        if path.exists():
            record = json.loads(path.read_text())
            record.update(changes)
            path.write_text(json.dumps(record))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
