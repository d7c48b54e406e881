"""FGSM (Goodfellow et al. 2015): the sensitivity attack used for adversarial training and A_SA."""

from __future__ import annotations

import torch
from torch import nn

from core.attacks.base import Attack, input_gradient, project_linf, signed_step


class FGSM(Attack):
    """x_p = clamp(x + ε · sign(∇ₓ CE(f(x), y)), 0, 1)."""

    def __init__(self, model: nn.Module, eps: float = 0.3) -> None:
        super().__init__(model, eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fgsm_example(x, input_gradient(self.model, x, y), self.eps)


def fgsm_example(x: torch.Tensor, grad: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM's example from a given input gradient (core.step computes that gradient itself)."""
    return project_linf(signed_step(x, grad, eps), x, eps)
