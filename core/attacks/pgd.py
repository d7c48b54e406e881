"""PGD-k with a random start (Madry et al. 2018): the evaluation check against gradient masking."""

from __future__ import annotations

import torch
from torch import nn

from core.attacks.base import Attack, check_eps, input_gradient, project_linf, signed_step, uniform_start


class PGD(Attack):
    """L∞ PGD: random start in the ε-ball, ``steps`` signed-gradient steps of size α, projected each step."""

    def __init__(
        self,
        model: nn.Module,
        eps: float = 0.3,
        alpha: float = 0.01,
        steps: int = 40,
        random_start: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(model, eps)
        self.alpha = check_eps("alpha", alpha)
        if steps < 1:
            raise ValueError(f"steps={steps}: PGD needs at least one step")
        self.steps = int(steps)
        self.random_start = random_start
        self.generator = generator

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        x_adv = uniform_start(x, self.eps, self.generator) if self.random_start else x.clone()
        for _ in range(self.steps):
            x_adv = project_linf(signed_step(x_adv, input_gradient(self.model, x_adv, y), self.alpha), x, self.eps)
        return x_adv
