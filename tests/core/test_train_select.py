"""Training attacks in the trainer, the PGD monitor, the training hold-out and best-epoch selection."""

from __future__ import annotations

import pytest
import torch

from core.attacks import FGSM, FGSMRS, PGD
from core.config import ConfigError, RunConfig
from core.train import (
    HOLDOUT_SEED,
    TrainStep,
    load_checkpoint,
    load_model,
    make_model,
    make_optimizer,
    split_holdout,
    train,
)
from tests.helpers import TINY, epoch_science, state_equal, train_until_crash

DEVICE = torch.device("cpu")


def tiny(variant: str = "baseline", **changes) -> RunConfig:
    return RunConfig.resolve(variant, "quick", **{**TINY, "epochs": 2, "monitor_pgd": 32, **changes})





@pytest.mark.slow
@pytest.mark.parametrize(("name", "cls"), [("fgsm", FGSM), ("fgsm_rs", FGSMRS), ("pgd", PGD)])
def test_train_step_uses_the_configured_attack_for_x_p(name, cls, data):
    config = tiny(train_attack=name, eps_s=0.2, train_steps=3)
    model = make_model(config, DEVICE)
    step = TrainStep(config, model, make_optimizer(config, model), attack_gen=torch.Generator().manual_seed(0))
    assert type(step.attack) is cls and step.attack.eps == pytest.approx(0.2)
    seen = []
    original = step.attack.forward

    def spy(x, y):
        out = original(x, y)
        seen.append(out)
        return out

    step.attack.forward = spy
    step.path = "plain"  # the fast FGSM paths compute x_p inline; tests/core/test_speed.py checks theirs
    x = data.train.images[:16].float() / 255
    step(x, data.train.labels[:16])
    assert len(seen) == 1 and seen[0].shape == x.shape  # x_p of the objective is the training attack's output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fgsm_rs", "pgd"])
def test_fgsm_rs_and_pgd_train_deterministically_and_learn(name, data):
    config = tiny(variant="ml_sa", train_attack=name, eps_s=0.1, epochs=3, train_steps=2)
    first = train(config, data, device=DEVICE)
    second = train(config, data, device=DEVICE)
    assert epoch_science(first.history) == epoch_science(second.history)
    assert state_equal(first.model.state_dict(), second.model.state_dict())
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert all("monitor_A_PGD" in h for h in first.history)
    fgsm = train(config.replace(train_attack="fgsm"), data, device=DEVICE)
    assert epoch_science(fgsm.history) != epoch_science(first.history)


@pytest.mark.slow
def test_pgd_monitor_can_be_turned_off_and_is_bounded_by_fgsm_ish(data):
    off = train(tiny(monitor_pgd=0, epochs=1), data, device=DEVICE)
    assert "monitor_A_PGD" not in off.history[0]
    on = train(tiny(epochs=1), data, device=DEVICE)
    assert 0.0 <= on.history[0]["monitor_A_PGD"] <= on.history[0]["monitor_A_orig"] + 100 / 32


@pytest.mark.slow
def test_holdout_is_stratified_disjoint_and_the_same_for_every_seed(data):
    kept, held, keep = split_holdout(data.train, 50)
    assert len(kept) + len(held) == len(data.train) and len(held) == 50
    held_idx = data.train.subset_indices(50, seed=HOLDOUT_SEED)
    assert set(keep.tolist()).isdisjoint(held_idx.tolist())
    counts = held.class_counts()
    assert max(counts) - min(c for c in counts if c) <= 1  # stratified
    with pytest.raises(Exception, match="leaves no training data"):
        split_holdout(data.train, len(data.train))
    # the trainer's monitor is the hold-out whatever the seed
    a = train(tiny(holdout=50, epochs=1, seed=0), data, device=DEVICE)
    b = train(tiny(holdout=50, epochs=1, seed=1), data, device=DEVICE)
    assert a.monitor == b.monitor == "holdout" and a.n_holdout == b.n_holdout == 50


def test_best_pgd_needs_a_training_holdout():
    with pytest.raises(ConfigError, match="holdout"):
        tiny(select="best_pgd")
    with pytest.raises(ConfigError, match="not one of"):
        tiny(train_attack="cw")


@pytest.mark.slow
def test_best_pgd_keeps_the_best_holdout_epoch_and_resume_is_exact(data, tmp_path):
    config = tiny(select="best_pgd", holdout=64, monitor_pgd=64, epochs=4, train_attack="pgd", train_steps=2,
                  eps_s=0.2, lr=3e-3)
    full = train(config, data, device=DEVICE, checkpoint_path=tmp_path / "full.pt")
    pgd = [h["monitor_A_PGD"] for h in full.history]
    best_epoch = pgd.index(max(pgd)) + 1  # first epoch reaching the maximum
    assert full.selected_epoch == best_epoch
    state = load_checkpoint(tmp_path / "full.pt")
    assert state["best"]["epoch"] == best_epoch
    assert state_equal(load_model(tmp_path / "full.pt", config, DEVICE).state_dict(), full.model.state_dict())
    last = load_model(tmp_path / "full.pt", config.replace(select="last", holdout=64), DEVICE)
    assert state_equal(last.state_dict(), state["model"])
    ckpt = tmp_path / "part.pt"
    train_until_crash(config, data, DEVICE, ckpt, epoch=2)
    resumed = train(config, data, device=DEVICE, checkpoint_path=ckpt, resume=True)
    assert resumed.resumed_from == 2
    assert epoch_science(resumed.history) == epoch_science(full.history)
    assert resumed.selected_epoch == full.selected_epoch
    assert state_equal(resumed.model.state_dict(), full.model.state_dict())


@pytest.mark.slow
def test_select_last_uses_the_last_epoch(data):
    result = train(tiny(epochs=2), data, device=DEVICE)
    assert result.selected_epoch == 2 and result.monitor == "test"


@pytest.mark.slow  # seconds of computation (searches, attacks, training steps)
def test_the_monitor_scores_pgd_at_eps_s_too_when_pgd_eps_differs(data):
    """The collapse rule compares FGSM and PGD at ε_s (core/flags.py); A_PGD's own ε keeps its curve."""
    from core.evaluate import evaluate
    from core.train import monitor_accuracy

    model = make_model(tiny(), DEVICE)
    same = monitor_accuracy(model, data.test, tiny(eps_s=0.1))
    assert "monitor_A_PGD_at_eps_s" not in same
    other = monitor_accuracy(model, data.test, tiny(eps_s=0.1, pgd_eps=0.3))
    assert other["monitor_A_PGD_at_eps_s"] == same["monitor_A_PGD"]  # the same attack at ε_s on the same images
    scores = evaluate(model, data.test, tiny(eps_s=0.1, pgd_eps=0.3, pgd_subset=64))
    assert scores["A_PGD_at_eps_s"].n == scores["A_PGD"].n == 64
    assert "A_PGD_at_eps_s" not in evaluate(model, data.test, tiny(eps_s=0.1, pgd_subset=64))
