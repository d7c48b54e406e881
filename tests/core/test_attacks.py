"""Tests for core.attacks (FGSM, PGD): the formula, the invariants of docs/architecture.md, and PGD's strength."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from core.attacks import FGSM, FGSMRS, PGD, Attack, make_train_attack
from core.data import load_dataset, to_float
from core.models import small_net

AttackFactory = Callable[[nn.Module, float], Attack]

ATTACKS: dict[str, AttackFactory] = {
    "fgsm": lambda model, eps: FGSM(model, eps=eps),
    "pgd": lambda model, eps: PGD(model, eps=eps, alpha=eps / 4, steps=5, generator=torch.Generator().manual_seed(0)),
    "fgsm_rs": lambda model, eps: FGSMRS(model, eps=eps, generator=torch.Generator().manual_seed(0)),
    "train_pgd": lambda model, eps: make_train_attack("pgd", model, eps, steps=3,
                                                      generator=torch.Generator().manual_seed(0)),
}


class DropoutBNNet(nn.Module):
    """A tiny classifier whose outputs depend on the mode (batchnorm + dropout), returning plain logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(28 * 28, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10)
        )
        self.modes_seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes_seen.append(self.training)
        return self.net(x)


def _data(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return x, y


def _model(seed: int = 0) -> DropoutBNNet:
    torch.manual_seed(seed)
    model = DropoutBNNet()
    # give batchnorm non-trivial running statistics, so eval and train mode really differ
    model.net[2].running_mean.uniform_(-0.5, 0.5)
    model.net[2].running_var.uniform_(0.5, 2.0)
    return model


def _fgsm_by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    model.eval()
    xr = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xr), y)
    (grad,) = torch.autograd.grad(loss, xr)
    return torch.clamp(x + eps * grad.sign(), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- FGSM formula


@pytest.mark.slow
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_fgsm_equals_the_formula_in_eval_mode(eps: float) -> None:
    model = _model()
    x, y = _data()
    expected = _fgsm_by_hand(model, x, y, eps)
    model.train()  # the attack must switch to eval mode itself
    x_adv = FGSM(model, eps=eps)(x, y)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=0)
    # and it really is a step: interior pixels with a non-zero gradient move by exactly eps
    assert not torch.equal(x_adv, x)


def test_fgsm_on_embedding_net_matches_formula() -> None:
    torch.manual_seed(0)
    model = small_net()
    x, y = _data(6, seed=1)
    expected = _fgsm_by_hand(model, x, y, 0.1)
    torch.testing.assert_close(FGSM(model, eps=0.1)(x, y), expected, rtol=0, atol=0)


def test_fgsm_eps_zero_returns_the_input() -> None:
    x, y = _data()
    torch.testing.assert_close(FGSM(_model(), eps=0.0)(x, y), x, rtol=0, atol=0)


def test_fgsm_default_eps_is_paper_value() -> None:
    assert FGSM(_model()).eps == pytest.approx(0.3)
    assert "eps=0.3" in repr(FGSM(_model()))


# ----------------------------------------------------------------------------------- invariants, both attacks


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_output_in_unit_box_eps_ball_and_detached(name: str, eps: float) -> None:
    model = _model()
    x, y = _data(16)
    x[:4] = 0.0  # saturated pixels exercise the [0, 1] clamp
    x[4:8] = 1.0
    x_in = x.clone().requires_grad_(True)  # even an input that carries a graph gives a detached result
    x_adv = ATTACKS[name](model, eps)(x_in, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    torch.testing.assert_close(x_in.detach(), x, rtol=0, atol=0)  # input not modified in place
    assert x_in.grad is None


@pytest.mark.parametrize("name", list(ATTACKS))
def test_parameter_grads_untouched(name: str) -> None:
    model = _model()
    x, y = _data()
    ATTACKS[name](model, 0.3)(x, y)
    assert all(p.grad is None for p in model.parameters())

    existing = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = existing[n].clone()
    ATTACKS[name](model, 0.3)(x, y)
    for n, p in model.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(p.grad, existing[n], rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("training", [True, False])
def test_runs_in_eval_mode_and_restores_mode(name: str, training: bool) -> None:
    model = _model()
    model.train(training)
    bn = model.net[2]
    stats = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    x, y = _data()
    first = ATTACKS[name](model, 0.2)(x, y)
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    assert model.modes_seen and not any(model.modes_seen)  # every forward of the attack ran in eval mode
    # eval mode: no batchnorm statistics updated, no dropout noise (so the attack is deterministic)
    torch.testing.assert_close(bn.running_mean, stats[0], rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, stats[1], rtol=0, atol=0)
    assert bn.num_batches_tracked == stats[2]
    second = ATTACKS[name](model, 0.2)(x, y)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ATTACKS))
def test_restores_mode_of_every_submodule(name: str) -> None:
    """A model trained with frozen batchnorm (parent in train, bn in eval) must come back exactly so."""
    model = _model()
    model.train()
    model.net[2].eval()
    before = {n: m.training for n, m in model.named_modules()}
    x, y = _data()
    ATTACKS[name](model, 0.2)(x, y)
    after = {n: m.training for n, m in model.named_modules()}
    assert after == before


class _Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ATTACKS))
def test_mode_restored_when_model_raises(name: str) -> None:
    model = _Broken().train()
    x, y = _data()
    with pytest.raises(RuntimeError, match="boom"):
        ATTACKS[name](model, 0.1)(x, y)
    assert model.training


@pytest.mark.parametrize("name", list(ATTACKS))
def test_works_on_any_module_returning_logits(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    for p in model.parameters():  # frozen parameters are fine too: only the input needs a gradient
        p.requires_grad_(False)
    x, y = _data()
    x_adv = ATTACKS[name](model, 0.1)(x, y)
    assert x_adv.shape == x.shape
    assert not torch.equal(x_adv, x)
    # a linear model's loss goes up along the attack direction
    with torch.no_grad():
        ce = nn.functional.cross_entropy
        assert ce(model(x_adv), y) > ce(model(x), y)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_length_mismatch_is_an_error(name: str) -> None:
    x, _ = _data(8)
    y = torch.zeros(7, dtype=torch.long)
    with pytest.raises(ValueError, match="8 images.*7 labels"):
        ATTACKS[name](_model(), 0.1)(x, y)


@pytest.mark.parametrize("eps", [-0.01, 1.5, 8.0])
def test_eps_outside_unit_interval_is_an_error(eps: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FGSM(_model(), eps=eps)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PGD(_model(), eps=eps)


# ------------------------------------------------------------------------------------------------------ PGD


def test_pgd_invalid_parameters() -> None:
    model = _model()
    for steps in (0, -3):
        with pytest.raises(ValueError, match="step"):
            PGD(model, steps=steps)
    with pytest.raises(ValueError, match="alpha"):
        PGD(model, alpha=2.0)
    with pytest.raises(ValueError, match="alpha"):
        PGD(model, alpha=-0.1)


def test_pgd_seeded_random_start_is_reproducible() -> None:
    model = _model()
    x, y = _data()

    def run(seed: int) -> torch.Tensor:
        return PGD(model, eps=0.3, alpha=0.05, steps=3, generator=torch.Generator().manual_seed(seed))(x, y)

    torch.testing.assert_close(run(7), run(7), rtol=0, atol=0)
    assert not torch.equal(run(7), run(8))  # the start really is random


def test_pgd_without_random_start_is_deterministic_and_ignores_rng() -> None:
    model = _model()
    x, y = _data()
    torch.manual_seed(1)
    a = PGD(model, eps=0.2, alpha=0.05, steps=3, random_start=False)(x, y)
    torch.manual_seed(2)
    b = PGD(model, eps=0.2, alpha=0.05, steps=3, random_start=False)(x, y)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pgd_one_full_step_without_start_equals_fgsm() -> None:
    model = _model()
    x, y = _data()
    pgd = PGD(model, eps=0.15, alpha=0.15, steps=1, random_start=False)(x, y)
    torch.testing.assert_close(pgd, FGSM(model, eps=0.15)(x, y), rtol=0, atol=0)


def test_pgd_projection_with_large_steps() -> None:
    """Steps larger than eps must still be projected back into the ε-ball around the *original* x."""
    model = _model()
    x, y = _data(16)
    eps = 0.05
    x_adv = PGD(model, eps=eps, alpha=0.5, steps=6, generator=torch.Generator().manual_seed(0))(x, y)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # with alpha >> eps almost every free pixel ends on the ball's boundary (or at 0 / 1)
    on_boundary = ((x_adv - x).abs() - eps).abs() < 1e-6
    at_box = (x_adv == 0.0) | (x_adv == 1.0)
    assert (on_boundary | at_box).float().mean() > 0.95


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The small net trained briefly on 1,000 real MNIST digits; 300 test images to attack."""
    torch.manual_seed(0)
    data = load_dataset("mnist-sample").with_subsets(1000, 300, seed=0)
    x_train, y_train = to_float(data.train.images), data.train.labels
    model = small_net()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(6):
        perm = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
    model.eval()
    return model, to_float(data.test.images), data.test.labels


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.slow
def test_pgd_at_least_as_strong_as_fgsm(trained: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = trained
    clean = _accuracy(model, x, y)
    assert clean > 0.6, f"the fixture model did not learn (clean accuracy {clean:.2f})"
    eps = 0.1
    fgsm_acc = _accuracy(model, FGSM(model, eps=eps)(x, y), y)
    pgd_acc = _accuracy(model, PGD(model, eps=eps, alpha=0.025, steps=10, generator=torch.Generator().manual_seed(0))(
        x, y), y)
    assert fgsm_acc < clean  # FGSM does hurt
    assert pgd_acc <= fgsm_acc + 0.02, (clean, fgsm_acc, pgd_acc)
    # the per-example loss PGD reaches is, on average, higher than FGSM's
    with torch.no_grad():
        ce = nn.functional.cross_entropy
        loss_fgsm = ce(model(FGSM(model, eps=eps)(x, y)), y)
        loss_pgd = ce(model(PGD(model, eps=eps, alpha=0.025, steps=10,
                                generator=torch.Generator().manual_seed(0))(x, y)), y)
    assert loss_pgd >= loss_fgsm
