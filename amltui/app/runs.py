"""Run folders and the execution of one run.

A run folder ``<runs_dir>/<run-id>/`` is the ground truth of a run: ``config.json`` (the resolved config),
``run.json`` (its record: status, progress, metrics), ``metrics.jsonl`` (one line per epoch and evaluation),
``log.txt`` and ``checkpoint.pt``. The store is an index of the records and can be rebuilt from the folders.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import os
import secrets
import shutil
import socket
import subprocess
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import amltui
from amltui.app.executors.owners import process_start
from amltui.app.executors.safepoint import HOLD_ENV, SafePoints
from amltui.app.fsutil import (
    atomic_write_json,
    open_append,
    parse_json,
    read_bytes_bounded,
    read_json,
    read_tail_lines,
    refuse_symlink,
)
from amltui.app.records import RESUMABLE, TERMINAL, WORKING, RunRecord, Status, now
from amltui.app.store import SKIP, Store, Unchanged, create_records, update_record, validate_run_id
from core.config import ConfigError, RunConfig
from core.errors import DataNotFoundError, TrainingFailed

if TYPE_CHECKING:  # torch and the science load lazily: `amltui ls` should not pay 3 s of imports
    import torch

    from core.data import Dataset

# What a user-triggered run operation may raise that is the user's to fix (printed without a traceback).
RunFailure = (DataNotFoundError, TrainingFailed, ConfigError, FileNotFoundError, ValueError)

Listener = Callable[[str, dict[str, Any]], None]


class HumanSetsRefused(ValueError):
    """The human-labelled sets do not apply to this run's data (they are MNIST digits)."""


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


def save_record(store: Store, rd: RunDir, record: dict[str, Any]) -> dict[str, Any]:
    """Replace a run's whole record (tests and tools that build one); a cancel requested meanwhile is kept.

    The run's own code changes records field by field with update_record instead.
    """
    def replace(current: dict[str, Any]) -> dict[str, Any]:
        if current.get("cancel_requested") and not record.get("cancel_requested"):
            record["cancel_requested"] = current["cancel_requested"]
        return dict(record)

    saved = update_record(store, rd.id, replace)
    assert saved is not None
    record["updated"] = saved["updated"]
    return record


def change_record(store: Store, run_id: str, **fields: Any) -> dict[str, Any]:
    """Set these fields of a run's record, whatever else it holds (update_record with a plain dict)."""
    saved = update_record(store, run_id, lambda record: record.update(fields))
    assert saved is not None
    return saved


def request_cancel(store: Store, run_id: str, reason: str) -> dict[str, Any] | None:
    """Write a cancel request into a running (or stalled) run's record, before any signal is sent.

    The worker honours it at its next safe point even if no signal reaches it (no pid yet, another host), and
    the liveness check turns a worker that died with a pending request into "cancelled". Returns the record,
    or None if the run was not running (then there is nothing to stop).
    """
    def request(record: dict[str, Any]) -> Unchanged | None:
        if record.get("status") not in WORKING:
            return SKIP
        record["cancel_requested"] = record.get("cancel_requested") or reason  # the first reason stands
        return None

    record = update_record(store, run_id, request)
    if record is not None:
        run_dir(store.runs_dir, run_id).log(f"cancel requested: {reason}")
    return record


def set_status(store: Store, run_id: str, status: str, *, expect: Collection[str] | None = None,
               worker_pid: int | None = None, **fields: Any) -> dict[str, Any] | None:
    """Change a run's status (and fields) if it currently has one of ``expect``; None if it had not.

    A locked read-modify-write (update_record), so a scheduler claiming a queued run and a user cancelling it
    cannot both win. With ``worker_pid`` the change applies only while that worker owns the run.
    """
    def change(record: dict[str, Any]) -> Unchanged | None:
        if expect is not None and record.get("status") not in expect:
            return SKIP
        if worker_pid is not None and record.get("pid") not in (None, worker_pid):
            return SKIP  # the run has moved on to another worker (e.g. it was resumed)
        record.update(status=status, **fields)
        if status in TERMINAL and not record.get("ended"):
            record["ended"] = now()
        return None

    record = update_record(store, run_id, change)
    if record is not None and fields.get("error"):
        run_dir(store.runs_dir, run_id).log(f"{status}: {fields['error']}")
    return record


def requeue(store: Store, run_id: str) -> dict[str, Any] | None:
    """Queue a failed, cancelled or orphaned run again, to continue from its checkpoint; None otherwise."""
    def again(record: dict[str, Any]) -> Unchanged | None:
        if record.get("status") not in RESUMABLE:
            return SKIP
        # An orphaned run never started: queueing it again is not a resume.
        resumes = record.get("resumes", 0) + (record.get("status") != Status.ORPHANED)
        record.update(status=Status.QUEUED, error=None, ended=None, resumes=resumes, cancel_requested=None,
                      stall=None)
        return None

    return update_record(store, run_id, again)


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
            if sweep:  # the sweep that queued the run (amltui/app/sweeps.py)
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
    """The record of a new queued run (its fields: amltui.app.records.RunRecord)."""
    return {
        "id": run_id, "status": Status.QUEUED, "variant": config.variant, "seed": config.seed,
        "dataset": config.dataset, "preset": config.preset, "arch": config.arch,
        "overrides": list(config.overrides), "group": config.group_key(), "context": config.context_key(),
        "config_diff": config.diff_from_preset(),
        # config.json is the run's config (the worker, resume and reproduce read it). This copy is on purpose:
        # `ls --where`, `export`, the reports and the dashboard filter and group every run by its config
        # values from the index alone (amltui/app/filters.py, report.py); without it they would open one
        # config.json per run on every listing. It is written once, here, and never changed.
        "config": config.to_dict(),
        "code_version": code_version(), "created": now(), "started": None, "ended": None,
        "epoch": 0, "epochs": config.epochs, "last": {}, "metrics": {}, "metrics_n": {},
        "fingerprint": None, "device": None, "host": None, "pid": None, "error": None, "traceback": None,
    }


def load_run_data(config: RunConfig) -> Dataset:
    from core.data import load_dataset

    # Synthetic data is generated with seed 0 whatever the run's seed: seeds of a comparison share the data.
    dataset = load_dataset(config.dataset, config.data_dir, seed=0)
    if config.train_subset or config.test_subset:
        # Subsets are drawn with seed 0 so that every seed of a comparison sees the same images.
        dataset = dataset.with_subsets(config.train_subset, config.test_subset, seed=0)
    return dataset


def invariance_for(config: RunConfig, dataset: Dataset, split: str, runs_dir: Path, device: torch.device,
                   listener: Listener) -> Any:
    """The cached invariance set of a split (generated with progress events when missing)."""
    from core.attacks.invariance import invariance_set_for
    from core.attacks.invariance_cache import default_cache_root

    def progress(done: int, total: int) -> None:
        listener("invariance", {"split": split, "done": done, "total": total})

    def warn(message: str) -> None:
        listener("warning", {"message": message})

    return invariance_set_for(dataset, split, eps=config.inv_eps, mode=config.inv_mode,
                              cache_root=default_cache_root(runs_dir), device=device, progress=progress,
                              warn=warn)


def execute(store: Store, run_id: str, *, resume: bool = False, listener: Listener | None = None,
            safe: SafePoints | None = None) -> dict[str, Any]:
    """Run (or resume) one run to the end in this process, keeping its folder and record up to date.

    Returns the final record. Failures are recorded (status failed, error, traceback tail) and re-raised.
    ``safe`` (amltui.app.executors.safepoint) is asked between phases and batches whether to stop; a stop there (or
    Ctrl-C in-process) marks the run cancelled, keeping the last finished checkpoint. Every write is an
    update_record of the fields this worker knows, so fields others write meanwhile (a cancel request, Slurm's
    job id) are never overwritten.
    """
    run = _Execution(store, run_dir(store.runs_dir, run_id), resume, listener or (lambda kind, data: None), safe)
    update_record(store, run_id, _running)
    # Everything from here on is inside the try: a cancel or an error during start-up is recorded like any other.
    try:
        return run.run()
    except KeyboardInterrupt as exc:
        run.cancelled(str(exc) or "cancelled by the user (Ctrl-C)")
        raise
    except BaseException as exc:
        run.failed(f"{type(exc).__name__}: {exc}", "".join(traceback.format_exc().splitlines(keepends=True)[-25:]))
        raise


def _running(record: dict[str, Any]) -> None:
    """The worker takes its run: who and where it runs."""
    gpu = os.environ.get("AMLTUI_GPU")
    record.update(status=Status.RUNNING, started=record.get("started") or now(), ended=None, error=None,
                  traceback=None, pid=os.getpid(), pid_start=process_start(os.getpid()), host=socket.gethostname(),
                  slot=os.environ.get("AMLTUI_SLOT", record.get("slot")), gpu=gpu,
                  gpu_uuid=gpu and os.environ.get("CUDA_VISIBLE_DEVICES"))


def _peak(record: dict[str, Any], peak: float | None) -> dict[str, Any]:
    """The ``gpu_peak_mib`` field after measuring ``peak`` (the footprint `--slots-per-gpu auto` plans with)."""
    return {} if peak is None else {"gpu_peak_mib": max(peak, record.get("gpu_peak_mib") or 0.0)}


@dataclass
class _Execution:
    """The steps of ``execute``: each writes what it has learnt into the record, and nothing else."""

    store: Store
    rd: RunDir
    resume: bool
    emit: Listener
    safe: SafePoints | None
    ended: dict[str, Any] | None = None  # the last long step whose end was logged

    def check(self, phase: str | None = None) -> None:
        if self.safe is not None:
            self.safe.check(phase)

    def enter(self, phase: str, **detail: Any) -> None:
        """A long phase starts: progress.json and log.txt say so (`ls`, `logs` and the live views show it)."""
        self.emit("phase", {"phase": phase, **detail})
        self.rd.log(f"phase {phase}" + "".join(f" {k}={v}" for k, v in detail.items()))

    def checked(self, kind: str, data: dict[str, Any]) -> None:
        self.emit(kind, data)
        if kind in ("invariance", "eval") and data.get("done") == data.get("total") and data != self.ended:
            self.ended = data  # a long step's end, once
            self.rd.log(f"{kind} " + " ".join(f"{k}={v}" for k, v in data.items()))
        self.check(_EVENT_PHASE.get(kind))  # between batches / chunks: a safe point

    def run(self) -> dict[str, Any]:
        self.check("import")  # before the imports that take seconds: an immediate cancel costs little
        from core.train import train

        if self.safe is not None and os.environ.get(HOLD_ENV) == "checkpoint":
            _hold_in_checkpoint_writes(self.safe)
        config = self.rd.read_config()
        device = self.start(config)
        self.check("data")
        dataset = load_run_data(config)
        change_record(self.store, self.rd.id, fingerprint=dataset.fingerprint, n_train=len(dataset.train),
                      n_test=len(dataset.test))
        inv_train = None
        if config.needs_invariance:
            self.enter("invariance", split="train")
            self.check("invariance")
            inv_train = invariance_for(config, dataset, "train", self.store.runs_dir, device, self.checked).x_star
        self.enter("train")
        self.check("train")
        result = train(config, dataset, device=device, checkpoint_path=self.rd.checkpoint, resume=self.resume,
                       invariance_train=inv_train, callback=lambda kind, data: self.on_event(device, kind, data))
        if config.select != "last":
            self.rd.log(f"selected epoch {result.selected_epoch} of {config.epochs} ({config.select}, "
                        f"hold-out of {result.n_holdout} training images)")
        fields, peak = self.evaluate(config, dataset, device, result)
        return self.finish(config, fields, peak, result.history)

    def start(self, config: RunConfig) -> torch.device:
        """Threads, device and determinism; records the device and logs how the run starts."""
        from core.device import resolve_device, set_deterministic, set_threads

        # A scheduler slot may split the cores between workers (AMLTUI_THREADS) and names itself (AMLTUI_SLOT).
        threads = set_threads(config.threads or _env_int("AMLTUI_THREADS"))
        device = resolve_device(config.device)
        set_deterministic(config.deterministic)
        record = change_record(self.store, self.rd.id, device=str(device))
        how = ""
        if self.resume and self.rd.checkpoint.exists():
            how = f"after epoch {record.get('epoch', '?')}"
        elif record.get("resumes"):
            how = "from the first epoch (no checkpoint yet)"
        self.rd.log(f"{'resuming' if how else 'starting'} on {device} ({threads} threads), code {code_version()}"
                    + (f"; {how}" if how else ""))
        return device

    def on_event(self, device: torch.device, kind: str, data: dict[str, Any]) -> None:
        if kind == "epoch":
            from core.device import peak_memory_mib

            self.rd.append_metrics({"kind": "epoch", **data})
            self.rd.log(" ".join(f"{k}={_fmt(v)}" for k, v in data.items()))
            peak = peak_memory_mib(device)
            update_record(self.store, self.rd.id, lambda r: r.update(epoch=data["epoch"], last=data, **_peak(r, peak)))
            if self.safe is not None:
                self.safe.hold("epoch")
        self.checked(kind, data)

    def evaluate(self, config: RunConfig, dataset: Dataset, device: torch.device,
                 result: Any) -> tuple[dict[str, Any], float | None]:
        """The final record fields of the trained model (not written yet) and the peak GPU memory."""
        from core.device import peak_memory_mib

        fields: dict[str, Any] = {"epoch": config.epochs, **selection_record(config, result)}
        if config.eval_ia:
            self.enter("invariance", split="test")
            self.check("invariance")
        inv = invariance_for(config, dataset, "test", self.store.runs_dir, device, self.checked) \
            if config.eval_ia else None
        inv_test = (inv.x_star, inv.target) if inv is not None else (None, None)
        self.enter("eval")
        self.check("eval")
        metrics = run_evaluation(result.model, dataset, config, inv_test, self.checked)
        self.check("finish")
        fields.update(metrics_record(metrics))
        peak = peak_memory_mib(device)
        fields.update(evaluation_context(config, dataset, self.store.runs_dir))
        if config.eval_aa:
            self.enter("autoattack")
            add_autoattack(self.store, self.rd.id, fields, result.model, config, dataset, self.emit)
        return fields, peak

    def finish(self, config: RunConfig, fields: dict[str, Any], peak: float | None,
               history: list[dict[str, Any]]) -> dict[str, Any]:
        # Flags set by later checks (`amltui eval --checks`) are only ever written for finished runs: this
        # read cannot miss one.
        fields.update(run_flags(config, fields["metrics"], history, self.rd.read_record().get("flags")))
        self.rd.append_metrics({"kind": "eval", **fields["metrics"], "n": fields["metrics_n"]})
        self.rd.log("evaluation " + " ".join(f"{k}={v:.2f}" for k, v in fields["metrics"].items()))
        for detail in fields["flag_details"]:
            self.rd.log(f"flag {detail['name']}: " + "; ".join(detail["reasons"]) + f" (rule: {detail['rule']})")
        done = update_record(self.store, self.rd.id, lambda r: r.update(
            fields, **_peak(r, peak), status=Status.DONE, ended=now(), pid=None))
        assert done is not None
        return done

    def cancelled(self, reason: str) -> None:
        change_record(self.store, self.rd.id, status=Status.CANCELLED, ended=now(), pid=None, error=reason)
        self.rd.log(f"cancelled: {reason}")

    def failed(self, error: str, trace: str) -> None:
        self.rd.log(f"failed: {error}")
        change_record(self.store, self.rd.id, status=Status.FAILED, ended=now(), pid=None, error=error,
                      traceback=trace)


_EVENT_PHASE = {"batch": "train", "epoch": "train", "invariance": "invariance", "eval": "eval"}


def _hold_in_checkpoint_writes(safe: SafePoints) -> None:
    """AMLTUI_TEST_HOLD=checkpoint: hold between writing a checkpoint's temp file and renaming it into place."""
    import core.train

    def hold(tmp: Path) -> None:
        safe.phase = "checkpoint"
        safe.hold("checkpoint")

    core.train.before_checkpoint_rename = hold


def run_evaluation(model: torch.nn.Module, dataset: Dataset, config: RunConfig,
                   inv_test: tuple[torch.Tensor | None, torch.Tensor | None], emit: Listener) -> dict[str, Any]:
    from core.evaluate import evaluate

    def progress(metric: str, done: int, total: int) -> None:
        emit("eval", {"metric": metric, "done": done, "total": total})

    return evaluate(model, dataset.test, config, invariance_x=inv_test[0], invariance_target=inv_test[1],
                    progress=progress)


def evaluation_context(config: RunConfig, dataset: Dataset, runs_dir: Path) -> dict[str, Any]:
    """What the numbers of a run were measured with, for tables to state: the PGD attack actually used, the
    invariance target table's domain and, for a fast invariance search, its measured agreement with exact."""
    from core.attacks.invariance import cached_agreement
    from core.attacks.invariance_cache import default_cache_root
    from core.domains import target_table_note

    splits = (["train"] if config.needs_invariance else []) + (["test"] if config.eval_ia else [])
    agreements = {s: cached_agreement(dataset, s, config.inv_eps, config.inv_mode, default_cache_root(runs_dir))
                  for s in splits}
    return {
        "pgd": {"steps": config.pgd_steps, "alpha": config.pgd_alpha, "eps": config.effective_pgd_eps},
        "target_table_note": target_table_note(config.dataset),
        "inv_agreement": {s: a for s, a in agreements.items() if a is not None},
    }
def selection_record(config: RunConfig, result: Any) -> dict[str, Any]:
    """Which epoch's weights the metrics are of, by which rule, and which split the per-epoch monitor used."""
    return {"select": config.select, "selected_epoch": result.selected_epoch, "monitor": result.monitor,
            "n_holdout": result.n_holdout}


def run_flags(config: RunConfig, metrics: dict[str, float], history: list[dict[str, Any]],
              previous: list[str] | None = None) -> dict[str, Any]:
    """``flags`` and ``flag_details`` of a run (core/flags.py: gradient masking, and whatever else registers).

    The sanity checks' ``check_*`` flags (core/checks.py, `amltui eval --checks`) are kept: they are owned by
    their own measurements, not by this rule.
    """
    from core.flags import check_run, flags_record

    fields = flags_record(check_run(config, metrics, history))
    kept = {f for f in previous or [] if isinstance(f, str) and f.startswith("check_")}
    fields["flags"] = sorted(set(fields["flags"]) | kept)
    return fields


def metrics_record(scores: dict[str, Any]) -> dict[str, Any]:
    from core.evaluate import scores_to_record

    metrics, counts = scores_to_record(scores)
    return {"metrics": metrics, "metrics_n": counts}


def add_autoattack(store: Store, run_id: str, record: dict[str, Any], model: torch.nn.Module, config: RunConfig,
                   dataset: Dataset, emit: Listener) -> None:
    """A_AA (config ``eval_aa``) into ``record``: cached per checkpoint, breakdown in <run>/autoattack.json."""
    from amltui.app.robustness import autoattack_after_training

    info = autoattack_after_training(store, run_id, model, config, dataset.test, emit)
    record["metrics"]["A_AA"], record["metrics_n"]["A_AA"] = info["percent"], info["n"]
    record["autoattack"] = info


@dataclass(frozen=True)
class LoadedRun:
    rd: RunDir
    config: RunConfig
    device: torch.device
    model: torch.nn.Module


def load_run_model(store: Store, run_id: str, device: str | None = None) -> LoadedRun:
    """A finished (or checkpointed) run's model on the requested device (default: the run's own)."""
    from core.device import resolve_device, set_threads
    from core.train import load_model

    rd = run_dir(store.runs_dir, run_id)
    if not rd.checkpoint.exists():
        raise FileNotFoundError(f"run {run_id} has no checkpoint yet ({rd.checkpoint}); it has not finished an epoch")
    config = rd.read_config()
    set_threads(config.threads)
    dev = resolve_device(device or config.device)
    return LoadedRun(rd, config, dev, load_model(rd.checkpoint, config, dev))


def evaluate_run(store: Store, run_id: str, *, device: str | None = None,
                 listener: Listener | None = None) -> dict[str, Any]:
    """Re-evaluate a run from its checkpoint and store the metrics in its record."""
    emit = listener or (lambda kind, data: None)
    before = _check_evaluable(store, run_id)
    loaded = load_run_model(store, run_id, device)
    rd, config, dev, model = loaded.rd, loaded.config, loaded.device, loaded.model
    dataset = load_run_data(config)
    inv = invariance_for(config, dataset, "test", store.runs_dir, dev, emit) if config.eval_ia else None
    scores = run_evaluation(model, dataset, config, (inv.x_star, inv.target) if inv else (None, None), emit)
    from amltui.app.robustness import carried_over_aa

    # A_AA and the flags' history are computed before taking the lock (AutoAttack takes minutes).
    fresh_aa: dict[str, Any] = {"metrics": {}, "metrics_n": {}}
    if config.eval_aa:
        add_autoattack(store, run_id, fresh_aa, model, config, dataset, emit)
    history = list({m["epoch"]: m for m in rd.read_metrics() if m.get("kind") == "epoch"}.values())
    context = evaluation_context(config, dataset, store.runs_dir)

    def store_scores(record: dict[str, Any]) -> None:
        # A run resumed while we evaluated its old checkpoint: its own final metrics must win.
        if any(record.get(k) != before.get(k) for k in ("status", "started", "resumes", "epoch")):
            raise ValueError(f"run {run_id} changed while it was being evaluated (now {record.get('status')}, "
                             f"epoch {record.get('epoch')}); the evaluation was not stored. Run `amltui eval "
                             f"{run_id}` again once it has ended")
        kept = carried_over_aa(rd, record)  # A_AA of this very checkpoint stays; a stale one goes
        record.update(metrics_record(scores), **context)
        if config.eval_aa:
            record["metrics"]["A_AA"], record["metrics_n"]["A_AA"] = fresh_aa["metrics"]["A_AA"], \
                fresh_aa["metrics_n"]["A_AA"]
            record["autoattack"] = fresh_aa["autoattack"]
        elif kept:
            record["metrics"]["A_AA"], record["metrics_n"]["A_AA"] = kept["A_AA"]
        record.update(run_flags(config, record["metrics"], history, record.get("flags")), evaluated=now())

    record = update_record(store, run_id, store_scores)
    assert record is not None
    rd.append_metrics({"kind": "eval", **record["metrics"], "n": record["metrics_n"]})
    return record


EVALUABLE = TERMINAL


def _check_evaluable(store: Store, run_id: str) -> dict[str, Any]:
    """The run's record if its checkpoint may be evaluated and the result recorded, else a clear error.

    Refused before the (long) evaluation: a queued or running run (its worker will write its own final
    metrics, and a result from an older checkpoint must never replace them) and a folder we cannot write.
    """
    rd = run_dir(store.runs_dir, run_id)
    record = rd.read_record()
    if not isinstance(record, dict):
        raise ValueError(f"{rd.record_file} does not hold a run record; `amltui store rebuild` lists the damage")
    status = record.get("status")
    if status not in EVALUABLE:
        raise ValueError(f"run {run_id} is {status}: only a finished run (done, failed or cancelled) can be "
                         f"evaluated; wait for it to end or `amltui cancel {run_id}` it first")
    if not os.access(rd.path, os.W_OK) or not os.access(rd.record_file, os.W_OK):
        raise PermissionError(errno.EACCES, f"cannot record the evaluation: {rd.path} is not writable",
                              str(rd.path))
    return record


def evaluate_human_sets(store: Store, run_id: str, *, from_dir: Path | None = None, mnist_dir: Path | None = None,
                        device: str | None = None) -> dict[str, Any]:
    """Score a run's model on Tramèr et al.'s human-labelled sets; stored in the record as ``human_sets``."""
    import torch

    from core.data import load_dataset
    from core.domains import human_sets_refusal
    from core.human_sets import load_human_sets, locate, score_human_set

    record = _check_evaluable(store, run_id)
    refusal = human_sets_refusal(str(record.get("dataset")))
    if refusal:
        raise HumanSetsRefused(f"run {run_id}: {refusal}")
    loaded = load_run_model(store, run_id, device)
    rd, config, dev, model = loaded.rd, loaded.config, loaded.device, loaded.model
    sets = load_human_sets(locate(from_dir))
    originals = None
    if mnist_dir is not None:
        originals = load_dataset("mnist", mnist_dir).test
    elif config.dataset == "mnist" and not config.test_subset:
        originals = load_dataset("mnist", config.data_dir).test

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x.to(dev)).argmax(1)

    results = {}
    for name, hs in sets.items():
        if originals is not None and int(hs.test_indices.max()) >= len(originals):
            raise ValueError(f"{name}: test index {int(hs.test_indices.max())} beyond the {len(originals)} "
                             "images of the given MNIST test split; --mnist-dir must hold the full MNIST")
        orig_x = originals.images[hs.test_indices] if originals is not None else None
        orig_y = originals.labels[hs.test_indices] if originals is not None else None
        results[name] = dataclasses.asdict(score_human_set(predict, hs, orig_x, orig_y))
        if orig_x is None:
            results[name]["max_excess"] = None
    out = {"sets": results, "have_originals": originals is not None, "evaluated": now()}
    change_record(store, run_id, human_sets=out)
    rd.append_metrics({"kind": "human_sets", **{k: v["acc_human"] for k, v in results.items()}})
    return out


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
