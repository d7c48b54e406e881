"""FGSM with a random start (Wong, Rice, Kolter 2020, "Fast is better than free"): a cheap training attack.

Plain FGSM training at large ε overfits to its own deterministic step (catastrophic overfitting / gradient
masking); starting from a uniform point in the ε-ball and taking one larger step avoids that at the same cost.
"""

from __future__ import annotations

import torch
from torch import nn

from core.attacks.base import Attack, check_eps, input_gradient, project_linf, signed_step, uniform_start


class FGSMRS(Attack):
    """x₀ = clamp(x + U(−ε, ε), 0, 1); x_adv = clamp(Π_ε(x₀ + α · sign(∇ₓ CE(f(x₀), y))), 0, 1).

    α defaults to 1.25·ε (Wong et al.); Π_ε projects onto the L∞ ball of radius ε around x.
    """

    def __init__(self, model: nn.Module, eps: float = 0.3, alpha: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(model, eps)
        self.alpha = check_eps("alpha", 1.25 * self.eps if alpha is None else alpha)
        self.generator = generator

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        x0 = uniform_start(x, self.eps, self.generator)
        return project_linf(signed_step(x0, input_gradient(self.model, x0, y), self.alpha), x, self.eps)
