"""The execution of one run, in the worker process: data, invariance sets, training, evaluation, flags.

Every write is an update_record of the fields this worker knows (amltui/app/runs/store.py), so fields others
write meanwhile (a cancel request, Slurm's job id) are never overwritten. torch and the science load lazily,
inside the functions, so that importing this module stays cheap.
"""

from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amltui.app.runs.folders import RunDir, code_version, run_dir
from amltui.app.runs.owners import process_start
from amltui.app.runs.records import Status, now
from amltui.app.runs.states import change_record
from amltui.app.runs.store import Store, update_record
from amltui.app.science.events import Listener
from amltui.app.science.loading import load_run_data
from amltui.app.science.safepoint import HOLD_ENV, SafePoints
from core.config import RunConfig

if TYPE_CHECKING:
    import torch

    from core.data import Dataset


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
    ``safe`` (amltui.app.science.safepoint) is asked between phases and batches whether to stop; a stop there (or
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
    from amltui.app.science.robustness import autoattack_after_training

    info = autoattack_after_training(store, run_id, model, config, dataset.test, emit)
    record["metrics"]["A_AA"], record["metrics_n"]["A_AA"] = info["percent"], info["n"]
    record["autoattack"] = info


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
