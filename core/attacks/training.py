"""The training attack: which sensitivity example x_p the objective (and the triplet positive) uses."""

from __future__ import annotations

import torch
from torch import nn

from core import registry
from core.attacks.base import Attack
from core.attacks.fgsm import FGSM
from core.attacks.fgsm_rs import FGSMRS
from core.attacks.pgd import PGD

TRAIN_ATTACKS = registry.TRAIN_ATTACKS


def default_alpha(name: str, eps: float, steps: int) -> float | None:
    """Step size when none is given: 1.25·ε for FGSM-RS (Wong et al.), 2.5·ε/k for PGD-k (Madry et al.)."""
    if name == "fgsm_rs":
        return min(1.0, 1.25 * eps)
    if name == "pgd":
        return min(1.0, 2.5 * eps / steps)
    return None


def make_train_attack(name: str, model: nn.Module, eps: float, *, alpha: float | None = None, steps: int = 7,
                      generator: torch.Generator | None = None) -> Attack:
    """``fgsm`` (the paper's), ``fgsm_rs`` (random start, one step α) or ``pgd`` (k steps of α, random start)."""
    if name == "fgsm":
        return FGSM(model, eps=eps)
    alpha = default_alpha(name, eps, steps) if alpha is None else alpha
    if name == "fgsm_rs":
        return FGSMRS(model, eps=eps, alpha=alpha, generator=generator)
    if name == "pgd":
        return PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True, generator=generator)
    raise ValueError(f"unknown training attack {name!r}; choose one of: {', '.join(TRAIN_ATTACKS)}")
