"""Accuracy counting for evaluation and the per-epoch monitor, without a host sync per batch.

Counts stay device tensors until the caller reads them once. FGSM's forward on x already gives the clean
logits, so clean and FGSM accuracy come from one forward (and one input-gradient backward) per batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attacks.base import check_eps, eval_mode
from core.attacks.fgsm import fgsm_example
from core.step import pool_first_embed


@torch.no_grad()
def count_correct(model: nn.Module, x: Tensor, *labels: Tensor) -> list[Tensor]:
    """One forward; for each label tensor the number of predictions equal to it (0-d device tensors)."""
    pred = model(x).argmax(1)
    return [(pred == y).sum() for y in labels]


def clean_and_fgsm_correct(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(clean correct, FGSM(eps) correct) with the model in eval mode; FGSM exactly as core.attacks.FGSM."""
    eps = check_eps("eps", eps)
    with eval_mode(model), torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        logits = model(xr)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), xr)
        clean = (logits.detach().argmax(1) == y).sum()
        x_adv = fgsm_example(x, grad, eps)
        (adv,) = count_correct(model, x_adv, y)
    return clean, adv


class FastForward(nn.Module):
    """``model``'s logits through core.step.pool_first_embed where it applies (same outputs, cheaper on CPU).

    Attacks and counters take it in place of the model; the model is its submodule, so eval_mode reaches it.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._embed = pool_first_embed(model) or model.embed

    def forward(self, x: Tensor) -> Tensor:
        return self.model.classify(self._embed(x))
