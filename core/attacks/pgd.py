"""PGD-k with a random start (Madry et al. 2018): the evaluation check against gradient masking."""

from __future__ import annotations

import torch
from torch import nn

from core.attacks.base import Attack, check_eps, input_gradient


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
        x_adv = x.clone()
        if self.random_start:
            # Drawn on the CPU generator so a seed gives the same start on every device.
            noise = torch.rand(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
            x_adv = (x_adv + (2 * noise - 1) * self.eps).clamp_(0.0, 1.0)
        for _ in range(self.steps):
            grad = input_gradient(self.model, x_adv, y)
            x_adv = x_adv + self.alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp_(0.0, 1.0)
        return x_adv
