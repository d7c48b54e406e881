"""Run folders: where a run lives and what its files are.

A run folder ``<runs_dir>/<run-id>/`` is the ground truth of a run: ``config.json`` (the resolved config),
``run.json`` (its record: status, progress, metrics), ``metrics.jsonl`` (one line per epoch and evaluation),
``log.txt`` and ``checkpoint.pt``. The store is an index of the records and can be rebuilt from the folders.
Making runs (folders and queued records) is here; changing their status is in states.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import amltui
from amltui.app.fsutil import (
    atomic_write_json,
    open_append,
    parse_json,
    read_bytes_bounded,
    read_json,
    read_tail_lines,
    refuse_symlink,
)
from amltui.app.runs.records import RunRecord, Status, now
from amltui.app.runs.store import Store, create_records, validate_run_id
from core.config import RunConfig


def default_runs_dir() -> Path:
    return Path(os.environ.get("AMLTUI_RUNS_DIR") or "runs")


@lru_cache(maxsize=1)
def code_version() -> str:
    """amltui's version plus the git commit of the source tree when there is one (``+dirty`` if edited)."""
    version = amltui.__version__
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}" if commit else version


def new_run_id(config: RunConfig) -> str:
    # Short enough for an 80-column `amltui ls`; the dataset and full times are in the record.
    stamp = dt.datetime.now().strftime("%m%d-%H%M%S")
    return f"{config.variant}-s{config.seed}-{stamp}-{secrets.token_hex(2)}"


MAX_METRICS_BYTES = 256 * 2**20  # a metrics.jsonl past this is refused, not read (docs/reliability.md)


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    config_file = property(lambda self: self.path / "config.json")
    record_file = property(lambda self: self.path / "run.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    log_file = property(lambda self: self.path / "log.txt")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")

    def read_config(self) -> RunConfig:
        return RunConfig.from_dict(read_json(self.config_file))

    def read_record(self) -> dict[str, Any]:
        return read_json(self.record_file)

    def append_metrics(self, line: dict[str, Any]) -> None:
        with open_append(self.metrics_file) as fh:
            fh.write(json.dumps(line) + "\n")

    def read_metrics(self, tail: int | None = None) -> list[dict[str, Any]]:
        """Metric lines (JSON objects); a torn last line (a writer killed mid-write), a line that is not an
        object and undecodable bytes are skipped. A metrics.jsonl that is not a regular file (a folder, a FIFO)
        is an OSError naming it, raised at once. ``tail``: only the last that many lines are read (``show``)."""
        if not self.metrics_file.exists():
            return []
        if tail is not None:
            raw_lines = read_tail_lines(self.metrics_file, tail)[0]
        else:
            raw_lines = read_bytes_bounded(self.metrics_file, MAX_METRICS_BYTES).splitlines()
        lines = []
        for raw in raw_lines:
            try:
                line = parse_json(raw.decode("utf-8", errors="replace"), "a metrics line")
            except ValueError:
                continue
            if isinstance(line, dict):
                lines.append(line)
        return lines

    def log(self, message: str) -> None:
        with open_append(self.log_file) as fh:
            fh.write(f"{now()} {message}\n")


def run_dir(runs_dir: Path, run_id: str) -> RunDir:
    """The folder of a run; UnsafePath (an OSError) if it is a symbolic link, which amltui never follows."""
    path = Path(runs_dir) / validate_run_id(run_id)
    refuse_symlink(path)
    return RunDir(path)


def create_run(store: Store, config: RunConfig, run_id: str | None = None) -> dict[str, Any]:
    """Make the run folder and a queued record for ``config``."""
    return create_runs(store, [config], [run_id])[0]


def create_runs(store: Store, configs: list[RunConfig], run_ids: list[str | None] | None = None,
                sweep: str | None = None) -> list[dict[str, Any]]:
    """Make the folders and queued records of several runs; the index is written once for all of them.

    Rewriting the index per run made queueing quadratic (500 runs took 19 s). If anything fails, the folders
    made so far are removed again, so a refused batch leaves nothing behind.
    """
    ids = [validate_run_id(i) if i is not None else new_run_id(c)
           for c, i in zip(configs, run_ids or [None] * len(configs), strict=True)]
    if len(set(ids)) != len(ids):
        raise ValueError("the same run id was given twice")
    made: list[Path] = []
    records = []
    try:
        for config, run_id in zip(configs, ids, strict=True):
            rd = run_dir(store.runs_dir, run_id)
            if rd.path.exists() or rd.path.is_symlink():
                raise FileExistsError(f"run folder {rd.path} already exists; pick another run id")
            rd.path.mkdir(parents=True)
            made.append(rd.path)
            record = _new_record(config, run_id)
            record["updated"] = now()
            if sweep:  # the sweep that queued the run (amltui/app/runs/sweeps.py)
                record["sweep"] = sweep
            # Not fsynced one by one (that cost 10 ms a run); the index write below is durable.
            atomic_write_json(rd.config_file, config.to_dict(), durable=False)
            atomic_write_json(rd.record_file, record, durable=False)
            records.append(record)
        create_records(store, records)
    except BaseException:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return records


def _new_record(config: RunConfig, run_id: str) -> RunRecord:
    """The record of a new queued run (its fields: amltui.app.runs.records.RunRecord)."""
    return {
        "id": run_id, "status": Status.QUEUED, "variant": config.variant, "seed": config.seed,
        "dataset": config.dataset, "preset": config.preset, "arch": config.arch,
        "overrides": list(config.overrides), "group": config.group_key(), "context": config.context_key(),
        "config_diff": config.diff_from_preset(),
        # config.json is the run's config (the worker, resume and reproduce read it). This copy is on purpose:
        # `ls --where`, `export`, the reports and the dashboard filter and group every run by its config
        # values from the index alone (amltui/app/runs/filters.py, report.py); without it they would open one
        # config.json per run on every listing. It is written once, here, and never changed.
        "config": config.to_dict(),
        "code_version": code_version(), "created": now(), "started": None, "ended": None,
        "epoch": 0, "epochs": config.epochs, "last": {}, "metrics": {}, "metrics_n": {},
        "fingerprint": None, "device": None, "host": None, "pid": None, "error": None, "traceback": None,
    }
