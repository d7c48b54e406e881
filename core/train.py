"""One training run: config → epochs of adversarial training (FGSM, FGSM-RS or PGD) with the triplet regularizers.

After every epoch a monitor scores clean, FGSM and PGD accuracy on a fixed subset: a hold-out carved from the
*training* data when ``holdout`` > 0 (the only split model selection, ``select=best_pgd``, may use), otherwise a
stratified subset of the test split, drawn for the curves only.

The trainer knows nothing of files except its checkpoint; everything else it reports through a callback
``callback(kind, data)`` with kind in {"batch", "epoch"}, so the CLI, a worker process or a test can listen.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.attacks import PGD
from core.config import RunConfig
from core.data import Dataset, Split, batch_indices, to_float
from core.device import set_deterministic
from core.errors import DiskFullError, TrainingFailed, disk_full_message  # noqa: F401  (re-exported)
from core.flags import MONITOR_PGD_AT_EPS_S
from core.fsio import NO_SPACE, atomic_write, open_regular
from core.losses import TERM_NAMES, TRIPLET_DIAGNOSTICS
from core.models import EmbeddingNet, build_model
from core.scoring import FastForward, clean_and_fgsm_correct, count_correct
from core.step import TrainStep, use_channels_last, weights_of  # noqa: F401  (TrainStep, weights_of re-exported)

Callback = Callable[[str, dict[str, Any]], None]
CHECKPOINT_VERSION = 1
MONITOR_SIZE = 1000  # test images scored after every epoch for the curves (the final evaluation uses all)
HOLDOUT_SEED = 0  # the hold-out is the same for every seed of a comparison: it must not depend on config.seed


@dataclass
class TrainResult:
    model: EmbeddingNet
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0
    selected_epoch: int = 0  # the epoch whose weights ``model`` holds (config.select decides which)
    monitor: str = "test"  # the split the per-epoch monitor scored: "holdout" (training data) or "test"
    n_holdout: int = 0


def make_model(config: RunConfig, device: torch.device) -> EmbeddingNet:
    torch.manual_seed(config.seed)  # the initial weights depend on the seed alone
    return build_model(config.arch, embed_dim=config.embed_dim, normalize=config.normalize).to(device)


def make_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


@dataclass
class _Run:
    """What a training run carries from epoch to epoch (and what its checkpoint saves)."""

    model: EmbeddingNet
    optimizer: torch.optim.Optimizer
    batch_gen: torch.Generator
    miner_gen: torch.Generator
    attack_gen: torch.Generator  # random starts of fgsm_rs / pgd training
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # {"epoch", "monitor_A_PGD", "model"} of the best epoch (select=best_pgd)
    start_epoch: int = 0


def train(
    config: RunConfig,
    dataset: Dataset,
    *,
    device: torch.device,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    invariance_train: torch.Tensor | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train one run. ``invariance_train`` holds x_q (N_train, 1, 28, 28) in [0, 1], aligned with the train split.

    With ``resume`` and an existing checkpoint, training continues after its last finished epoch and ends with
    exactly the state an uninterrupted run would have (same seed, same device, same thread count; on CUDA only
    with ``deterministic`` set, see docs/gpus.md, "GPUs on shared servers").
    """
    emit = callback or (lambda kind, data: None)
    _check_invariance_input(config, dataset, invariance_train)
    set_deterministic(config.deterministic)
    train_split, held_out, keep = split_holdout(dataset.train, config.holdout)
    train_split = train_split.to(device)
    x_inv_all = invariance_train.to(device) if invariance_train is not None else None
    if x_inv_all is not None and keep is not None:
        x_inv_all = x_inv_all[keep.to(device)]
    run = _new_run(config, device)
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        _restore(run, load_checkpoint(checkpoint_path, device))
    step_fn = TrainStep(config, run.model, run.optimizer, run.miner_gen, run.attack_gen)
    monitor = (held_out if held_out is not None else _monitor_split(dataset.test, config.seed)).to(device)
    for epoch in range(run.start_epoch, config.epochs):
        started = time.perf_counter()
        totals = _train_epoch(config, step_fn, run, train_split, x_inv_all, epoch, emit)
        record: dict[str, Any] = {"epoch": epoch + 1, "epochs": config.epochs}
        record.update(_epoch_terms(totals, len(train_split), step_fn))
        record.update(monitor_accuracy(run.model, monitor, config))
        record["seconds"] = time.perf_counter() - started
        _end_epoch(config, run, record, checkpoint_path)
        emit("epoch", record)
    return _result(config, run, held_out)


def _check_invariance_input(config: RunConfig, dataset: Dataset, invariance_train: torch.Tensor | None) -> None:
    if config.needs_invariance and invariance_train is None:
        raise TrainingFailed(
            f"variant {config.variant} needs the invariance examples (x_q) of the training split; "
            "generate them with `amltui invariance generate` or run through `amltui run`, which does it for you"
        )
    if invariance_train is not None and invariance_train.shape[0] != len(dataset.train):
        raise TrainingFailed(
            f"invariance set has {invariance_train.shape[0]} examples but the training split has "
            f"{len(dataset.train)}: it was made for other data; regenerate it"
        )


def _new_run(config: RunConfig, device: torch.device) -> _Run:
    """The seeded model, optimizer and generators of epoch 0 (in this order: it fixes the random streams)."""
    model = make_model(config, device)
    if config.channels_last:
        use_channels_last(model)  # before the optimizer: its state follows the parameters' layout
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    optimizer = make_optimizer(config, model)
    return _Run(model, optimizer, batch_gen=torch.Generator().manual_seed(config.seed),
                miner_gen=torch.Generator().manual_seed(config.seed + 1),
                attack_gen=torch.Generator().manual_seed(config.seed + 2))


def _restore(run: _Run, state: dict[str, Any]) -> None:
    """Continue from a checkpoint: weights, optimizer, every random stream, the history and the best epoch."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.batch_gen.set_state(state["batch_rng"])
    run.miner_gen.set_state(state["miner_rng"])
    if "attack_rng" in state:
        run.attack_gen.set_state(state["attack_rng"])
    torch.set_rng_state(state["torch_rng"])
    run.history = list(state["history"])
    run.best = state.get("best")
    run.start_epoch = int(state["epoch"])


def _train_epoch(config: RunConfig, step_fn: TrainStep, run: _Run, train_split: Split,
                 x_inv_all: torch.Tensor | None, epoch: int, emit: Callback) -> dict[str, float]:
    """One pass over the training split; returns Σ term·batch size per objective term."""
    device = train_split.labels.device
    n = len(train_split)
    steps = math.ceil(n / config.batch_size)
    # Host syncs (reading a loss) stall an accelerator's queue: losses are read every `sync_every` batches.
    sync_every = config.log_every or (1 if device.type == "cpu" else 50)
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    run.model.train()
    sums = torch.zeros(len(TERM_NAMES), dtype=acc_dtype, device=device)  # Σ term·batch size, on device
    window: list[torch.Tensor] = []  # losses since the last sync
    for step, idx in enumerate(batch_indices(n, config.batch_size, run.batch_gen, device=device)):
        x_inv = x_inv_all[idx] if (x_inv_all is not None and step_fn.weights.lambda_ia > 0) else None
        terms = step_fn.step(to_float(train_split.images[idx]), train_split.labels[idx], x_inv)
        sums += torch.stack([terms[k] for k in TERM_NAMES]).to(acc_dtype) * len(idx)
        window.append(terms["loss"])
        if len(window) < sync_every and step + 1 < steps:
            continue
        losses = torch.stack(window).tolist()
        window.clear()
        _check_losses(losses, config, epoch, first_batch=step + 2 - len(losses))
        emit("batch", {"epoch": epoch + 1, "epochs": config.epochs, "step": step + 1, "steps": steps,
                       "loss": losses[-1]})
    return dict(zip(TERM_NAMES, sums.tolist(), strict=True))


def _epoch_terms(totals: dict[str, float], n: int, step_fn: TrainStep) -> dict[str, float]:
    """The epoch's mean of each term as ``train_<term>``; a triplet type that was not computed (λ = 0) has no
    active share or negative distance (0 would read as a claim)."""
    lambdas = {"sa": step_fn.weights.lambda_sa, "ia": step_fn.weights.lambda_ia}
    absent = {name for key, names in TRIPLET_DIAGNOSTICS.items() if lambdas[key] == 0 for name in names}
    return {f"train_{k}": v / n for k, v in totals.items() if k not in absent}


def _check_losses(losses: list[float], config: RunConfig, epoch: int, first_batch: int) -> None:
    """Fail on the first non-finite loss, naming its (1-based) batch; ``first_batch`` is that of losses[0]."""
    for i, loss in enumerate(losses):
        if not math.isfinite(loss):
            raise TrainingFailed(
                f"loss became {loss} at epoch {epoch + 1}, batch {first_batch + i}; "
                f"try a smaller learning rate (lr={config.lr}) — the last good checkpoint is kept"
            )


def _end_epoch(config: RunConfig, run: _Run, record: dict[str, Any], checkpoint_path: Path | None) -> None:
    """Record the epoch, keep the best weights for select=best_pgd, and checkpoint."""
    run.history.append(record)
    epoch = record["epoch"]
    pgd_acc = record.get("monitor_A_PGD")
    better = pgd_acc is not None and (run.best is None or pgd_acc > run.best["monitor_A_PGD"])
    if config.select == "best_pgd" and better:
        run.best = {"epoch": epoch, "monitor_A_PGD": pgd_acc,
                    "model": {k: v.detach().clone() for k, v in run.model.state_dict().items()}}
    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, run.model, run.optimizer, epoch, run.batch_gen, run.miner_gen, run.history,
                        attack_gen=run.attack_gen, best=run.best)


def _result(config: RunConfig, run: _Run, held_out: Split | None) -> TrainResult:
    """The selected epoch's model (last, or best hold-out PGD) in the layout load_model gives."""
    selected = len(run.history)
    if config.select == "best_pgd" and run.best is not None:
        run.model.load_state_dict(run.best["model"])
        selected = int(run.best["epoch"])
    run.model.to(memory_format=torch.contiguous_format)  # the same layout (and outputs) as load_model's
    return TrainResult(model=run.model, history=run.history, resumed_from=run.start_epoch, selected_epoch=selected,
                       monitor="holdout" if held_out is not None else "test",
                       n_holdout=len(held_out) if held_out is not None else 0)


def split_holdout(train: Split, holdout: int) -> tuple[Split, Split | None, torch.Tensor | None]:
    """(training split, hold-out, kept indices): ``holdout`` stratified training images, seeded by HOLDOUT_SEED.

    The hold-out depends on the data and its size only, so every seed (and variant) of a comparison trains on
    the same images and selects on the same hold-out.
    """
    if holdout <= 0:
        return train, None, None
    if holdout >= len(train):
        raise TrainingFailed(f"holdout={holdout} leaves no training data (the split has {len(train)} images); "
                             "use a smaller holdout")
    held = train.subset_indices(holdout, seed=HOLDOUT_SEED, stratified=True)
    mask = torch.ones(len(train), dtype=torch.bool)
    mask[held] = False
    keep = torch.nonzero(mask).flatten()
    return train.select(keep), train.select(held), keep


def _monitor_split(test: Split, seed: int) -> Split:
    if len(test) <= MONITOR_SIZE:
        return test
    return test.subset(MONITOR_SIZE, seed=seed, stratified=True)


def monitor_accuracy(model: EmbeddingNet, split: Split, config: RunConfig) -> dict[str, float]:
    """Clean, FGSM and PGD accuracy (%) on the monitor, for the per-epoch curves, selection and the flag.

    PGD-``monitor_pgd_steps`` (step 2.5·ε/k, random start drawn from a fixed seed, so every epoch and every
    resume sees the same starts) runs on the first ``monitor_pgd`` images of the (stratified) monitor: cheap
    enough for every epoch, strong enough to expose gradient masking that FGSM accuracy hides. When ``pgd_eps``
    differs from ε_s, the same PGD at ε_s on the same images (``monitor_A_PGD_at_eps_s``) gives the collapse rule
    a PGD curve at FGSM's ε (core/flags.py: like with like).
    """
    was_training = model.training
    model.eval()
    net = FastForward(model)  # the same logits; on CPU the PReLUs run after pooling
    eps = config.effective_pgd_eps
    clean = adv = torch.zeros((), dtype=torch.int64, device=split.labels.device)
    for start in range(0, len(split), config.eval_batch_size):
        x = to_float(split.images[start:start + config.eval_batch_size])
        y = split.labels[start:start + config.eval_batch_size]
        c, a = clean_and_fgsm_correct(net, x, y, config.eps_s)  # one forward serves both
        clean, adv = clean + c, adv + a
    record = {"monitor_A_orig": 100.0 * int(clean) / len(split), "monitor_A_SA": 100.0 * int(adv) / len(split)}
    n_pgd = min(config.monitor_pgd, len(split))
    if n_pgd > 0:
        sub = split.select(monitor_pgd_indices(split, n_pgd))
        record["monitor_A_PGD"] = _monitor_pgd(net, sub, config, eps)
        if eps != config.eps_s:
            record[MONITOR_PGD_AT_EPS_S] = _monitor_pgd(net, sub, config, config.eps_s)
    model.train(was_training)
    return record


def _monitor_pgd(net: nn.Module, sub: Split, config: RunConfig, eps: float) -> float:
    """PGD-``monitor_pgd_steps`` accuracy (%) at ``eps`` on the monitor's PGD images."""
    steps = config.monitor_pgd_steps
    pgd = PGD(net, eps=eps, alpha=min(1.0, 2.5 * eps / steps), steps=steps,
              generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    robust = torch.zeros((), dtype=torch.int64, device=sub.labels.device)
    for start in range(0, len(sub), config.eval_batch_size):
        x = to_float(sub.images[start:start + config.eval_batch_size])
        y = sub.labels[start:start + config.eval_batch_size]
        robust = robust + count_correct(net, pgd(x, y), y)[0]
    return 100.0 * int(robust) / len(sub)


def monitor_pgd_indices(split: Split, n: int) -> torch.Tensor:
    """A stratified n-image subset of the monitor (the same every epoch)."""
    if n >= len(split):
        return torch.arange(len(split))
    return split.subset_indices(n, seed=HOLDOUT_SEED, stratified=True)


# ---- checkpoints --------------------------------------------------------------------------------------
# Called with the temp file's path between writing a checkpoint and renaming it into place; the lifecycle tests
# use it to cancel a run at exactly that moment (amltui/app/science/execution.py, AMLTUI_TEST_HOLD=checkpoint).
before_checkpoint_rename: Callable[[Path], None] | None = None


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    batch_gen: torch.Generator,
    miner_gen: torch.Generator,
    history: list[dict[str, Any]],
    *,
    attack_gen: torch.Generator | None = None,
    best: dict[str, Any] | None = None,
) -> None:
    """Everything a run needs to continue exactly; written to a temp file then renamed (never half-written)."""
    state: dict[str, Any] = {
        "version": CHECKPOINT_VERSION,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "batch_rng": batch_gen.get_state(),
        "miner_rng": miner_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
    }
    if attack_gen is not None:
        state["attack_rng"] = attack_gen.get_state()
    if best is not None:
        state["best"] = best
    # Serialized in memory first: the size is known, and a full disk fails as a plain ENOSPC on our own write
    # (torch.save to a file turns it into a cryptic "file write failed" RuntimeError).
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    try:
        atomic_write(path, lambda fh: fh.write(data), before_rename=before_checkpoint_rename)
    except OSError as exc:
        if exc.errno in NO_SPACE:  # the old checkpoint stays, and atomic_write removed its temp file
            raise DiskFullError(disk_full_message(path, len(data), f"the checkpoint {path.name}")) from None
        raise


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: a checkpoint never runs code."""
    try:
        with open_regular(path) as fh:  # a FIFO in its place is refused, not waited on
            state = torch.load(fh, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise TrainingFailed(f"checkpoint {path} cannot be read ({exc.__class__.__name__}: {exc}); "
                             "delete it to restart the run from scratch") from exc
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise TrainingFailed(f"checkpoint {path} is not an amltui v{CHECKPOINT_VERSION} checkpoint")
    missing = [k for k in ("epoch", "model", "optimizer", "batch_rng", "miner_rng", "torch_rng") if k not in state]
    if missing:
        raise TrainingFailed(f"checkpoint {path} lacks {', '.join(missing)}; it is damaged: delete it to restart "
                             "the run from scratch")
    for key in ("batch_rng", "miner_rng", "torch_rng", "attack_rng"):
        if key not in state:
            continue  # attack_rng: only checkpoints of runs with a random-start training attack
        if not isinstance(state[key], torch.Tensor):
            raise TrainingFailed(f"checkpoint {path}: {key} is not a tensor; it is damaged, delete it")
        state[key] = state[key].cpu()
    return state


def load_model(path: Path, config: RunConfig, device: torch.device) -> EmbeddingNet:
    """The model of a run from its checkpoint, ready for evaluation: the selected epoch's weights."""
    state = load_checkpoint(path, device)
    model = build_model(config.arch, embed_dim=config.embed_dim, normalize=config.normalize).to(device)
    weights = state["best"]["model"] if config.select == "best_pgd" and state.get("best") else state.get("model")
    if not isinstance(weights, dict):
        raise TrainingFailed(f"checkpoint {path} has no model weights (key 'model'); it is damaged, delete it")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or (first[0] if first else "")
        raise TrainingFailed(
            f"checkpoint {path} does not fit the run's model ({config.arch}, embed_dim={config.embed_dim}): "
            f"{detail}. Was config.json or checkpoint.pt changed or copied from another run?") from None
    model.eval()
    return model
