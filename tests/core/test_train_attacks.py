"""Training attacks (FGSM-RS, PGD-k) against closed forms, and their wiring into the training step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.attacks import FGSM, FGSMRS, PGD, make_train_attack
from core.attacks.training import default_alpha


def _two_class_linear(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """logits = W·x + b with 2 classes: ∇ₓ CE for label 0 is p₁·(w₁ − w₀), so its sign is sign(w₁ − w₀)
    everywhere — every step of every attack moves each pixel in a direction known in closed form."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    w = model[1].weight.detach()
    return model, (w[1] - w[0]).sign().view(1, 1, 28, 28)


def _images(n: int = 6, seed: int = 1) -> torch.Tensor:
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    x[0] = 0.0  # saturated images exercise the [0, 1] clamp
    x[1] = 1.0
    return x


def _uniform_start(x: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed))
    return (x + (2 * noise - 1) * eps).clamp(0.0, 1.0)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_fgsm_rs_closed_form(eps: float) -> None:
    model, s = _two_class_linear()
    x, y = _images(), torch.zeros(6, dtype=torch.long)
    x0 = _uniform_start(x, eps, seed=7)
    alpha = 1.25 * eps
    expected = torch.min(torch.max(x0 + alpha * s, x - eps), x + eps).clamp(0.0, 1.0)
    got = FGSMRS(model, eps=eps, generator=torch.Generator().manual_seed(7))(x, y)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    # α = 1.25ε > ε: from any start the step reaches the face of the ball in the gradient's direction
    # (wherever [0, 1] allows), so the result equals FGSM's on those pixels
    fgsm = FGSM(model, eps=eps)(x, y)
    inside = ((x + eps * s) >= 0) & ((x + eps * s) <= 1) & (x0 - x).abs().le(alpha - eps + 1e-7)
    assert inside.any()
    torch.testing.assert_close(got[inside.expand_as(got)], fgsm[inside.expand_as(fgsm)], rtol=0, atol=1e-6)


def test_fgsm_rs_default_alpha_and_explicit_alpha() -> None:
    model, s = _two_class_linear()
    assert FGSMRS(model, eps=0.2).alpha == pytest.approx(0.25)
    x, y = _images(), torch.zeros(6, dtype=torch.long)
    # α = 0: the result is the random start itself (projected), a check that α is really used
    got = FGSMRS(model, eps=0.2, alpha=0.0, generator=torch.Generator().manual_seed(3))(x, y)
    torch.testing.assert_close(got, _uniform_start(x, 0.2, seed=3), rtol=0, atol=1e-7)


def test_fgsm_rs_start_is_seeded_and_differs_from_fgsm() -> None:
    model, _ = _two_class_linear()
    x, y = _images(), torch.zeros(6, dtype=torch.long)
    a = FGSMRS(model, eps=0.3, alpha=0.1, generator=torch.Generator().manual_seed(5))(x, y)
    b = FGSMRS(model, eps=0.3, alpha=0.1, generator=torch.Generator().manual_seed(5))(x, y)
    c = FGSMRS(model, eps=0.3, alpha=0.1, generator=torch.Generator().manual_seed(6))(x, y)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("steps", [1, 3, 7])
def test_pgd_training_closed_form(steps: int) -> None:
    model, s = _two_class_linear()
    x, y = _images(), torch.zeros(6, dtype=torch.long)
    eps = 0.3
    alpha = default_alpha("pgd", eps, steps)
    assert alpha == pytest.approx(2.5 * eps / steps)
    # k steps of α in a constant direction from the start, each projected to the ball and [0, 1]
    expected = _uniform_start(x, eps, seed=11)
    for _ in range(steps):
        expected = torch.min(torch.max(expected + alpha * s, x - eps), x + eps).clamp(0.0, 1.0)
    attack = make_train_attack("pgd", model, eps, steps=steps, generator=torch.Generator().manual_seed(11))
    assert isinstance(attack, PGD) and attack.steps == steps and attack.random_start
    torch.testing.assert_close(attack(x, y), expected, rtol=0, atol=1e-6)
    # kα = 2.5ε ≥ 2ε: every pixel ends on the ball's face, exactly FGSM's answer
    torch.testing.assert_close(attack(x, y), FGSM(model, eps=eps)(x, y), rtol=0, atol=1e-6)


def test_make_train_attack_names_and_errors() -> None:
    model, _ = _two_class_linear()
    assert type(make_train_attack("fgsm", model, 0.1)) is FGSM
    rs = make_train_attack("fgsm_rs", model, 0.1, alpha=0.05)
    assert isinstance(rs, FGSMRS) and rs.alpha == pytest.approx(0.05)
    pgd = make_train_attack("pgd", model, 0.1, alpha=0.02, steps=4)
    assert pgd.alpha == pytest.approx(0.02) and pgd.steps == 4
    with pytest.raises(ValueError, match="unknown training attack"):
        make_train_attack("cw", model, 0.1)
