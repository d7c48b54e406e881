"""FGSM (Goodfellow et al. 2015): the sensitivity attack used for adversarial training and A_SA."""

from __future__ import annotations

import torch
from torch import nn

from core.attacks.base import Attack, input_gradient


class FGSM(Attack):
    """x_p = clamp(x + ε · sign(∇ₓ CE(f(x), y)), 0, 1)."""

    def __init__(self, model: nn.Module, eps: float = 0.3) -> None:
        super().__init__(model, eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        grad = input_gradient(self.model, x, y)
        return (x + self.eps * grad.sign()).clamp_(0.0, 1.0)
