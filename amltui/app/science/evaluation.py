"""Evaluating a finished run again from its checkpoint: the metrics, and Tramèr et al.'s human-labelled sets."""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amltui.app.runs.folders import run_dir
from amltui.app.runs.records import TERMINAL, now
from amltui.app.runs.states import change_record
from amltui.app.runs.store import Store, update_record
from amltui.app.science.events import Listener
from amltui.app.science.execution import (
    add_autoattack,
    evaluation_context,
    invariance_for,
    metrics_record,
    run_evaluation,
    run_flags,
)
from amltui.app.science.loading import load_run_data, load_run_model
from amltui.app.science.robustness import carried_over_aa

if TYPE_CHECKING:
    import torch


class HumanSetsRefused(ValueError):
    """The human-labelled sets do not apply to this run's data (they are MNIST digits)."""


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
