"""Evaluation on the test split; every number a percentage with its n.

- A_orig: clean accuracy.
- A_SA: accuracy on FGSM(ε_s) examples made white-box against the evaluated model.
- A_PGD: PGD-k accuracy at ε_s (random start): an FGSM-trained model must not be judged by FGSM alone.
- A_PGD_at_eps_s: the same PGD on A_PGD's images at ε_s, only when ``pgd_eps`` differs from ε_s: the
  gradient-masking flag compares FGSM with PGD at one ε (core/flags.py), never A_SA at ε_s with A_PGD at another.
- A_IA: accuracy on the test split's invariance examples against the *original* label (the paper's Table 1).
- A_IA→target: fraction of invariance examples classified as the attack's target (Tramèr et al.'s reading).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.attacks import FGSM, PGD
from core.config import RunConfig
from core.data import Split, to_float
from core.flags import PGD_AT_EPS_S  # not a table column (core/metrics.py): the masking flag's like-with-like input
from core.metrics import METRIC_ORDER
from core.models import EmbeddingNet
from core.scoring import FastForward, clean_and_fgsm_correct, count_correct
from core.step import use_channels_last

Progress = Callable[[str, int, int], None]  # (metric, done, total)


@dataclass(frozen=True)
class Score:
    correct: int
    n: int

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.n if self.n else float("nan")


#: Progress moves at least this many times per measurement (a bar that jumps 0 → 100% says nothing), and a
#: chunk never shrinks below MIN_CHUNK images (smaller batches cost more than the progress is worth).
PROGRESS_STEPS = 10
MIN_CHUNK = 16


def progress_chunk(n: int, batch_size: int) -> int:
    """Images per attacked chunk: ``batch_size``, or less so that ``n`` images report ~PROGRESS_STEPS times.

    It depends only on n and batch_size (not on whether anyone watches), so a measurement is reproducible.
    """
    return max(1, min(batch_size, max(MIN_CHUNK, -(-n // PROGRESS_STEPS))))


def _batches(n: int, size: int):
    size = progress_chunk(n, size)
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def score(
    model: EmbeddingNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int,
    attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    metric: str = "",
    progress: Progress | None = None,
) -> Score:
    """Count predictions equal to ``labels`` on images (uint8 or float), optionally attacked first.

    The count stays on the device until the end (no host sync per batch).
    """
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=labels.device)
    if progress:  # a start event: elapsed time counts from here, not from the first chunk's end
        progress(metric, 0, len(labels))
    for sl in _batches(len(labels), batch_size):
        x = images[sl]
        x = to_float(x) if x.dtype == torch.uint8 else x
        y = labels[sl]
        if attack is not None:
            x = attack(x, y)
        correct = correct + count_correct(model, x, y)[0]
        if progress:
            progress(metric, sl.stop, len(labels))
    return Score(int(correct), len(labels))


def score_clean_and_fgsm(model: EmbeddingNet, images: torch.Tensor, labels: torch.Tensor, *, eps: float,
                         batch_size: int, progress: Progress | None = None) -> tuple[Score, Score]:
    """(A_orig, A_SA) in one pass: FGSM's forward on the clean images gives their predictions too."""
    model.eval()
    clean = adv = torch.zeros((), dtype=torch.int64, device=labels.device)
    for metric in ("A_orig", "A_SA") if progress else ():
        progress(metric, 0, len(labels))
    for sl in _batches(len(labels), batch_size):
        x = images[sl]
        c, a = clean_and_fgsm_correct(model, to_float(x) if x.dtype == torch.uint8 else x, labels[sl], eps)
        clean, adv = clean + c, adv + a
        if progress:
            progress("A_orig", sl.stop, len(labels))
            progress("A_SA", sl.stop, len(labels))
    return Score(int(clean), len(labels)), Score(int(adv), len(labels))


def score_two_labelings(model: EmbeddingNet, images: torch.Tensor, labels: torch.Tensor, other: torch.Tensor,
                        *, batch_size: int, metrics: tuple[str, str] = ("", ""),
                        progress: Progress | None = None) -> tuple[Score, Score]:
    """Accuracy of one forward per batch against two label sets (A_IA and A_IA→target share their images)."""
    model.eval()
    hits = [torch.zeros((), dtype=torch.int64, device=labels.device) for _ in range(2)]
    for metric in metrics if progress else ():
        progress(metric, 0, len(labels))
    for sl in _batches(len(labels), batch_size):
        x = images[sl]
        found = count_correct(model, to_float(x) if x.dtype == torch.uint8 else x, labels[sl], other[sl])
        hits = [h + f for h, f in zip(hits, found, strict=True)]
        if progress:
            for metric in metrics:
                progress(metric, sl.stop, len(labels))
    return Score(int(hits[0]), len(labels)), Score(int(hits[1]), len(labels))


def evaluate(
    model: EmbeddingNet,
    test: Split,
    config: RunConfig,
    *,
    invariance_x: torch.Tensor | None = None,
    invariance_target: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> dict[str, Score]:
    """All metrics of a run. Invariance metrics only when the test split's invariance set is given.

    With ``config.channels_last`` a conv model is scored in channels_last (1.3–1.7× faster on CPU,
    bench/README.md) and handed back in the default layout.
    """
    restore = config.channels_last and use_channels_last(model)
    try:
        return _evaluate(model, test, config, invariance_x=invariance_x, invariance_target=invariance_target,
                         progress=progress)
    finally:
        if restore:
            model.to(memory_format=torch.contiguous_format)


def _evaluate(model: EmbeddingNet, test: Split, config: RunConfig, *, invariance_x: torch.Tensor | None,
              invariance_target: torch.Tensor | None, progress: Progress | None) -> dict[str, Score]:
    device = next(model.parameters()).device
    model = FastForward(model)  # type: ignore[assignment]  # same logits; PReLU after pooling on CPU
    test = test.to(device)
    bs = config.eval_batch_size
    scores: dict[str, Score] = {}
    scores["A_orig"], scores["A_SA"] = score_clean_and_fgsm(model, test.images, test.labels, eps=config.eps_s,
                                                            batch_size=bs, progress=progress)
    if invariance_x is not None and invariance_target is not None:
        scores["A_IA"], scores["A_IA_target"] = score_two_labelings(
            model, invariance_x.to(device), test.labels, invariance_target.to(device), batch_size=bs,
            metrics=("A_IA", "A_IA_target"), progress=progress)
    pgd_split = test
    if config.pgd_subset is not None and config.pgd_subset < len(test):
        pgd_split = test.subset(config.pgd_subset, seed=0, stratified=True)
    pgd = PGD(model, eps=config.effective_pgd_eps, alpha=config.pgd_alpha, steps=config.pgd_steps,
              generator=torch.Generator().manual_seed(config.seed))
    scores["A_PGD"] = score(model, pgd_split.images, pgd_split.labels, batch_size=bs, attack=pgd,
                            metric="A_PGD", progress=progress)
    if config.effective_pgd_eps != config.eps_s:  # the masking flag compares FGSM and PGD at ε_s (core/flags.py)
        at_eps_s = PGD(model, eps=config.eps_s, alpha=config.pgd_alpha, steps=config.pgd_steps,
                       generator=torch.Generator().manual_seed(config.seed))
        scores[PGD_AT_EPS_S] = score(model, pgd_split.images, pgd_split.labels, batch_size=bs, attack=at_eps_s,
                                     metric=PGD_AT_EPS_S, progress=progress)
    return scores


def scores_to_record(scores: dict[str, Score]) -> tuple[dict[str, float], dict[str, int]]:
    """(metrics in %, n per metric), in the paper's column order (then the flag's own measurements), for the
    run record."""
    ordered = [k for k in METRIC_ORDER if k in scores] + [k for k in scores if k not in METRIC_ORDER]
    return {k: round(scores[k].percent, 4) for k in ordered}, {k: scores[k].n for k in ordered}


def embeddings(model: EmbeddingNet, test: Split, eps: float, *, n: int = 2000, batch_size: int = 1000,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """Penultimate embeddings h(x) of natural and FGSM(ε)-perturbed test images (a stratified subset of n)."""
    device = next(model.parameters()).device
    split = test if len(test) <= n else test.subset(n, seed=seed, stratified=True)
    split = split.to(device)
    model.eval()
    fgsm = FGSM(model, eps)
    natural, perturbed = [], []
    for sl in _batches(len(split), batch_size):
        x, y = to_float(split.images[sl]), split.labels[sl]
        x_adv = fgsm(x, y)
        with torch.no_grad():
            natural.append(model.embed(x).cpu())
            perturbed.append(model.embed(x_adv).cpu())
    return {"natural": torch.cat(natural), "perturbed": torch.cat(perturbed), "labels": split.labels.cpu()}


def pca_2d(natural: torch.Tensor, perturbed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project both sets on the top-2 principal axes of the natural embeddings (as in the paper's Figure 1).

    Returns (natural 2-D, perturbed 2-D, explained variance ratio of the two axes).
    """
    mean = natural.mean(0, keepdim=True)
    centred = (natural - mean).double()
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2].T
    explained = (s[:2] ** 2) / (s**2).sum()
    return ((natural - mean).double() @ axes).float(), ((perturbed - mean).double() @ axes).float(), explained.float()
