"""Evaluation on the test split; every number a percentage with its n.

- A_orig: clean accuracy.
- A_SA: accuracy on FGSM(ε_s) examples made white-box against the evaluated model.
- A_PGD: PGD-k accuracy at ε_s (random start): an FGSM-trained model must not be judged by FGSM alone.
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
from core.metrics import METRIC_LABELS, METRIC_ORDER  # noqa: F401  (re-exported)
from core.models import EmbeddingNet

Progress = Callable[[str, int, int], None]  # (metric, done, total)


@dataclass(frozen=True)
class Score:
    correct: int
    n: int

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.n if self.n else float("nan")


def _batches(n: int, size: int):
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
    """Count predictions equal to ``labels`` on images (uint8 or float), optionally attacked first."""
    model.eval()
    correct = 0
    for sl in _batches(len(labels), batch_size):
        x = images[sl]
        x = to_float(x) if x.dtype == torch.uint8 else x
        y = labels[sl]
        if attack is not None:
            x = attack(x, y)
        with torch.no_grad():
            correct += int((model(x).argmax(1) == y).sum())
        if progress:
            progress(metric, sl.stop, len(labels))
    return Score(correct, len(labels))


def evaluate(
    model: EmbeddingNet,
    test: Split,
    config: RunConfig,
    *,
    invariance_x: torch.Tensor | None = None,
    invariance_target: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> dict[str, Score]:
    """All metrics of a run. Invariance metrics only when the test split's invariance set is given."""
    device = next(model.parameters()).device
    test = test.to(device)
    bs = config.eval_batch_size
    scores = {
        "A_orig": score(model, test.images, test.labels, batch_size=bs, metric="A_orig", progress=progress),
        "A_SA": score(model, test.images, test.labels, batch_size=bs, attack=FGSM(model, config.eps_s),
                      metric="A_SA", progress=progress),
    }
    if invariance_x is not None and invariance_target is not None:
        x_inv = invariance_x.to(device)
        scores["A_IA"] = score(model, x_inv, test.labels, batch_size=bs, metric="A_IA", progress=progress)
        scores["A_IA_target"] = score(model, x_inv, invariance_target.to(device), batch_size=bs,
                                      metric="A_IA_target", progress=progress)
    pgd_split = test
    if config.pgd_subset is not None and config.pgd_subset < len(test):
        pgd_split = test.subset(config.pgd_subset, seed=0, stratified=True)
    pgd = PGD(model, eps=config.effective_pgd_eps, alpha=config.pgd_alpha, steps=config.pgd_steps,
              generator=torch.Generator().manual_seed(config.seed))
    scores["A_PGD"] = score(model, pgd_split.images, pgd_split.labels, batch_size=bs, attack=pgd,
                            metric="A_PGD", progress=progress)
    return scores


def scores_to_record(scores: dict[str, Score]) -> tuple[dict[str, float], dict[str, int]]:
    """(metrics in %, n per metric), in the paper's column order, for the run record."""
    ordered = [k for k in METRIC_ORDER if k in scores]
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
