"""Attack base class in the torchattacks convention: hyperparameters in the constructor, ``attack(x, y)``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from core.registry import ATTACK_EPS


def check_eps(name: str, value: float) -> float:
    """Budgets are in pixel units of [0, 1] images; anything else is a unit mistake."""
    if not ATTACK_EPS.contains(float(value)):
        raise ValueError(f"{name}={value} is outside {ATTACK_EPS}; attack budgets are in pixel units of [0, 1] "
                         "images")
    return float(value)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the attack on the model in eval mode, then restore every submodule's own mode (frozen BN stays)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ₓ CE(f(x), y) w.r.t. the input only: parameter ``.grad`` fields are never touched."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = nn.functional.cross_entropy(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def signed_step(x: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
    """x + α · sign(g): the one signed-gradient step of FGSM, FGSM-RS, PGD and the fused training step."""
    return x + alpha * grad.sign()


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Π onto the L∞ ball of radius ε around x, then onto [0, 1] (a no-op on the ball for an FGSM step of ε)."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def uniform_start(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """x + U(−ε, ε), clamped to [0, 1]; drawn on the CPU generator so a seed gives the same start on every
    device (and a resumed run continues the same stream)."""
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x + (2 * noise - 1) * eps).clamp_(0.0, 1.0)


class Attack:
    """An attack object: ``attack(x, y) -> x_adv`` with x in [0, 1]; the result is detached."""

    def __init__(self, model: nn.Module, eps: float) -> None:
        self.model = model
        self.eps = check_eps("eps", eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} images but y has {y.shape[0]} labels")
        with eval_mode(self.model):
            return self.forward(x, y).detach()

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k != "model")
        return f"{type(self).__name__}({params})"
