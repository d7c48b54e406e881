"""Training: determinism, exact resume, failure modes, and that it learns."""

from __future__ import annotations

import math

import pytest
import torch

import core.step as step_mod
from core.config import RunConfig
from core.data import load_dataset
from core.evaluate import evaluate
from core.train import TrainingFailed, load_checkpoint, load_model, make_model, train
from tests.helpers import TINY, epoch_science, state_equal, train_until_crash

DEVICE = torch.device("cpu")


def tiny_config(variant: str = "ml_sa", **changes) -> RunConfig:
    return RunConfig.resolve(variant, "quick", **{**TINY, "epochs": 2, **changes})





@pytest.mark.slow
@pytest.mark.parametrize("variant", ["baseline", "ml_sa"])
def test_same_config_and_seed_give_identical_runs(data, variant):
    config = tiny_config(variant)
    first = train(config, data, device=DEVICE)
    second = train(config, data, device=DEVICE)
    assert epoch_science(first.history) == epoch_science(second.history)
    assert state_equal(first.model.state_dict(), second.model.state_dict())
    other = train(config.replace(seed=1), data, device=DEVICE)
    assert epoch_science(other.history) != epoch_science(first.history)


@pytest.mark.slow
def test_resume_from_checkpoint_matches_uninterrupted_run(data, tmp_path):
    config = tiny_config("ml_sa", epochs=3, miner="random")  # random miner: its RNG state must be restored too
    full = train(config, data, device=DEVICE, checkpoint_path=tmp_path / "full.pt")
    ckpt = tmp_path / "part.pt"
    train_until_crash(config, data, DEVICE, ckpt, epoch=1)
    assert load_checkpoint(ckpt)["epoch"] == 1
    resumed = train(config, data, device=DEVICE, checkpoint_path=ckpt, resume=True)
    assert resumed.resumed_from == 1
    assert epoch_science(resumed.history) == epoch_science(full.history)
    assert state_equal(resumed.model.state_dict(), full.model.state_dict())
    assert load_checkpoint(ckpt)["epoch"] == 3


@pytest.mark.slow
def test_checkpoint_loads_weights_only_and_rebuilds_the_model(data, tmp_path):
    config = tiny_config("baseline", epochs=1)
    result = train(config, data, device=DEVICE, checkpoint_path=tmp_path / "c.pt")
    model = load_model(tmp_path / "c.pt", config, DEVICE)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), result.model.eval()(x))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "c.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingFailed, match="cannot be read"):
        load_checkpoint(bad)


@pytest.mark.slow
def test_non_finite_loss_fails_the_run_with_a_reason(data, monkeypatch):
    real = step_mod.objective_terms

    def poisoned(**kwargs):
        loss, terms = real(**kwargs)
        return loss * math.nan, {**terms, "loss": terms["loss"] * math.nan}

    monkeypatch.setattr(step_mod, "objective_terms", poisoned)
    with pytest.raises(TrainingFailed, match="loss became nan.*learning rate"):
        train(tiny_config("ml_sa"), data, device=DEVICE)


@pytest.mark.slow
def test_ml_sa_ia_refuses_to_run_without_invariance_examples(data):
    with pytest.raises(TrainingFailed, match="invariance examples"):
        train(tiny_config("ml_sa_ia"), data, device=DEVICE)


@pytest.mark.slow
def test_invariance_examples_must_match_the_training_split(data):
    wrong = torch.zeros(10, 1, 28, 28)
    with pytest.raises(TrainingFailed, match="regenerate"):
        train(tiny_config("ml_sa_ia"), data, device=DEVICE, invariance_train=wrong)


@pytest.mark.slow
def test_ml_sa_ia_uses_the_invariance_examples(data):
    config = tiny_config("ml_sa_ia", epochs=1)
    x_q = (data.train.images.float() / 255).roll(1, dims=-1)
    result = train(config, data, device=DEVICE, invariance_train=x_q)
    assert result.history[0]["train_triplet_ia"] > 0
    # Both triplet types computed: both have their diagnostics.
    assert 0 < result.history[0]["train_active_ia"] <= 1 and 0 <= result.history[0]["train_neg_dist_ia"] <= 1
    assert "train_active_sa" in result.history[0] and "train_neg_dist_sa" in result.history[0]
    # Different invariance examples give a different run: they really enter the loss.
    other = train(config, data, device=DEVICE, invariance_train=x_q.roll(1, dims=-2))
    assert other.history[0]["train_triplet_ia"] != result.history[0]["train_triplet_ia"]


@pytest.mark.slow
def test_events_report_progress_and_epoch_metrics(data):
    events = []
    train(tiny_config("ml_sa", epochs=2), data, device=DEVICE, callback=lambda k, d: events.append((k, d)))
    batches = [d for k, d in events if k == "batch"]
    epochs = [d for k, d in events if k == "epoch"]
    assert len(batches) == 2 * 4 and batches[-1]["step"] == batches[-1]["steps"] == 4
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert {"train_loss", "train_triplet_sa", "monitor_A_orig", "monitor_A_SA"} <= epochs[0].keys()


@pytest.mark.slow
def test_training_learns_and_evaluation_reports_every_metric():
    data = load_dataset("synthetic", seed=0).with_subsets(1000, 300, seed=0)
    config = tiny_config("baseline", epochs=4, train_subset=1000, test_subset=300, lr=3e-3, eps_s=0.1,
                         pgd_steps=10, pgd_alpha=0.03)
    result = train(config, data, device=DEVICE)
    scores = evaluate(result.model, data.test, config, invariance_x=to_float_shifted(data),
                      invariance_target=(data.test.labels + 1) % 10)
    assert scores["A_orig"].n == 300 and scores["A_orig"].percent > 60  # chance is 10
    assert scores["A_PGD"].percent <= scores["A_SA"].percent + 2  # PGD is at least as strong as FGSM
    assert scores["A_SA"].percent < scores["A_orig"].percent
    assert set(scores) == {"A_orig", "A_SA", "A_IA", "A_IA_target", "A_PGD"}
    assert scores["A_IA"].n == scores["A_IA_target"].n == 300


def to_float_shifted(data):
    return (data.test.images.float() / 255).roll(2, dims=-1)


@pytest.mark.slow
def test_epoch_records_hold_the_triplet_diagnostics(data):
    """Per epoch: the SA triplet loss, its share of active triplets and the mean distance to the mined negative,
    equal to the batch-size-weighted mean of what the step computed (read from the device once per epoch)."""
    seen: list[tuple[int, dict]] = []
    real_step = step_mod.TrainStep.step

    def spy(self, x, y, x_inv=None):
        terms = real_step(self, x, y, x_inv)
        seen.append((len(y), {k: float(v) for k, v in terms.items()}))
        return terms

    step_mod.TrainStep.step = spy
    try:
        (epoch,) = train(tiny_config("ml_sa", epochs=1), data, device=DEVICE).history
    finally:
        step_mod.TrainStep.step = real_step
    n = sum(size for size, _ in seen)
    for name in ("triplet_sa", "active_sa", "neg_dist_sa"):
        assert epoch[f"train_{name}"] == pytest.approx(sum(size * t[name] for size, t in seen) / n)
    assert 0 < epoch["train_active_sa"] <= 1 and 0 <= epoch["train_neg_dist_sa"] <= 1  # abs_cos: D in [0, 1]
    # ml_sa computes no IA triplet: no active share or distance that would read as a measurement
    assert "train_active_ia" not in epoch and "train_neg_dist_ia" not in epoch


@pytest.mark.parametrize(("name", "signed"), [("abs_cos", False), ("cos", True)])
def test_the_distance_key_reaches_the_loss_and_the_miner(name, signed):
    """The miner ranks negatives by the loss's own distance (config key ``distance``)."""
    config = tiny_config("ml_sa", distance=name)
    model = make_model(config, DEVICE)
    step = step_mod.TrainStep(config, model, torch.optim.Adam(model.parameters()))
    assert step.triplet.distance.signed is signed and step.triplet.miner.distance is step.triplet.distance
