"""The faster training step and evaluation compute what the plain ones do; the GPU options' logic, on CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from core.attacks import FGSM
from core.config import RunConfig
from core.data import load_dataset
from core.evaluate import score, score_clean_and_fgsm, score_two_labelings
from core.models import build_model
from core.scoring import clean_and_fgsm_correct
from core.step import TrainStep, mode_independent, pool_first_embed, use_channels_last
from core.train import make_optimizer, train
from tests.helpers import ROOT, TINY


def step_grads(variant: str, *, plain: bool = False, channels_last: bool = False, slope: float | None = None,
               overrides: tuple[str, ...] = (), compile_backend: str = "inductor") -> tuple[float, list, str]:
    """(loss, parameter grads, path) of one TrainStep from fixed weights on a fixed batch of 32 digits."""
    torch.manual_seed(0)
    config = RunConfig.resolve(variant, "paper", batch_size=32, overrides=list(overrides))
    model = build_model("paper")
    if slope is not None:
        with torch.no_grad():
            model.trunk[1].weight.fill_(slope)
    if channels_last:
        use_channels_last(model)
    step = TrainStep(config, model, make_optimizer(config, model), torch.Generator().manual_seed(1),
                     compile_backend=compile_backend)
    if plain:
        step.path, step.embed = "plain", model.embed
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(32, 1, 28, 28, generator=gen)
    y = torch.arange(32) % 10
    x_inv = x.roll(1, dims=-1) if config.needs_invariance else None
    info = step(x, y, x_inv)
    return info["loss"], [p.grad.clone() for p in model.parameters()], step.path


def close(a: list, b: list, tol: float = 1e-4) -> bool:
    return all(float((g - r).abs().max()) <= tol * float(r.abs().max().clamp_min(1e-12))
               for g, r in zip(a, b, strict=True))


@pytest.mark.slow  # seconds of computation (searches, attacks, training steps)
@pytest.mark.parametrize(("variant", "path"), [("baseline", "fused"), ("ml_sa", "reuse"), ("ml_sa_ia", "reuse")])
def test_fast_paths_give_the_plain_steps_loss_and_gradients(variant, path):
    ref_loss, ref, ref_path = step_grads(variant, plain=True)
    assert ref_path == "plain"
    loss, grads, used = step_grads(variant, channels_last=True)
    assert used == path
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert close(grads, ref)
    # A different batch gives different gradients: the comparison can fail.
    assert not close([g * 1.01 for g in grads], ref, tol=1e-4)


@pytest.mark.parametrize("variant", ["baseline", "ml_sa"])
def test_fast_paths_use_fgsm_examples_as_x_p(variant, monkeypatch):
    torch.manual_seed(0)
    config = RunConfig.resolve(variant, "paper", batch_size=16)
    model = build_model("paper")
    step = TrainStep(config, model, make_optimizer(config, model))
    assert step.path in ("fused", "reuse")
    seen = []
    real = TrainStep._fgsm
    monkeypatch.setattr(TrainStep, "_fgsm", lambda self, x, g: seen.append(real(self, x, g)) or seen[-1])
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    expected = FGSM(model, config.eps_s)(x, y)
    step(x, y)
    assert len(seen) == 1 and torch.equal(seen[0], expected)


def test_pool_first_only_while_slopes_are_positive():
    torch.manual_seed(0)
    model = build_model("paper")
    fast = pool_first_embed(model)
    assert fast is not None
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(fast(x), model.embed(x))  # bitwise: max-pooling commutes with an increasing PReLU
    with torch.no_grad():
        model.trunk[1].weight.fill_(-0.5)  # decreasing: must not swap
    assert torch.equal(fast(x), model.embed(x))
    loss, grads, _ = step_grads("ml_sa", slope=-0.5)
    ref_loss, ref, _ = step_grads("ml_sa", slope=-0.5, plain=True)
    assert loss == pytest.approx(ref_loss, rel=1e-6) and close(grads, ref)
    assert pool_first_embed(build_model("small")) is None  # no PReLU → MaxPool pair


def test_models_with_mode_dependent_layers_take_the_plain_path():
    assert mode_independent(build_model("paper")) and mode_independent(build_model("small"))
    config = RunConfig.resolve("ml_sa", "paper")
    for extra in (nn.Dropout(0.1), nn.BatchNorm1d(4)):
        model = build_model("paper")
        model.trunk.append(extra)
        assert not mode_independent(model)
        assert TrainStep(config, model, make_optimizer(config, model)).path == "plain"
    other_attack = RunConfig.resolve("ml_sa", "paper", overrides=["train_attack=fgsm_rs"])
    model = build_model("paper")
    assert TrainStep(other_attack, model, make_optimizer(other_attack, model)).path == "plain"


def test_amp_keeps_the_attack_and_loss_in_float32_and_stays_close():
    ref_loss, ref, _ = step_grads("ml_sa", plain=True)
    loss, grads, path = step_grads("ml_sa", overrides=("amp=true",))
    assert path == "plain"  # the float32 attack's forward cannot double as the bf16 one
    assert loss == pytest.approx(ref_loss, rel=2e-2)
    assert loss != ref_loss  # bf16 really ran
    cos = [float(nn.functional.cosine_similarity(g.flatten(), r.flatten(), dim=0))
           for g, r in zip(grads, ref, strict=True)]
    assert min(cos) > 0.95


@pytest.mark.slow
def test_compile_wraps_the_embedding_and_changes_nothing():
    ref_loss, ref, _ = step_grads("ml_sa")
    loss, grads, path = step_grads("ml_sa", overrides=("compile=true",), compile_backend="eager")
    assert path == "reuse"
    assert loss == pytest.approx(ref_loss, rel=1e-6) and close(grads, ref)


def test_speed_keys_are_runtime_only_except_amp():
    base = RunConfig.resolve("ml_sa", "quick")
    for key in ("compile=true", "cudnn_benchmark=true", "channels_last=false", "log_every=7"):
        assert RunConfig.resolve("ml_sa", "quick", overrides=[key]).group_key() == base.group_key()
    assert RunConfig.resolve("ml_sa", "quick", overrides=["amp=true"]).group_key() != base.group_key()


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", seed=0).with_subsets(256, 128, seed=0)


def tiny(**changes) -> RunConfig:
    return RunConfig.resolve("ml_sa", "quick", **{**TINY, "epochs": 2, **changes})


@pytest.mark.slow
def test_log_every_reads_losses_every_k_batches_with_the_same_results(data):
    every: list = []
    sparse: list = []
    a = train(tiny(), data, device=torch.device("cpu"), callback=lambda k, d: every.append((k, d)))
    b = train(tiny(overrides=["log_every=3"]), data, device=torch.device("cpu"),
              callback=lambda k, d: sparse.append((k, d)))
    assert [d["step"] for k, d in every if k == "batch"] == [1, 2, 3, 4] * 2
    assert [d["step"] for k, d in sparse if k == "batch"] == [3, 4] * 2  # every 3rd and the epoch's last
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b.history]


@pytest.mark.slow
def test_channels_last_training_returns_a_contiguous_model_close_to_the_plain_one(data):
    fast = train(tiny(arch="paper", epochs=1), data, device=torch.device("cpu"))
    plain = train(tiny(arch="paper", epochs=1, overrides=["channels_last=false"]), data, device=torch.device("cpu"))
    conv = fast.model.trunk[0].weight
    assert conv.is_contiguous()
    assert fast.history[0]["train_loss"] == pytest.approx(plain.history[0]["train_loss"], rel=1e-4)


@pytest.mark.slow
def test_fused_evaluation_counts_equal_the_separate_passes():
    torch.manual_seed(0)
    model = build_model("small").eval()
    ds = load_dataset("synthetic", seed=0).with_subsets(64, 300, seed=0)
    imgs, labels = ds.test.images, ds.test.labels
    a_orig, a_sa = score_clean_and_fgsm(model, imgs, labels, eps=0.1, batch_size=128)
    assert a_orig == score(model, imgs, labels, batch_size=128)
    assert a_sa == score(model, imgs, labels, batch_size=128, attack=FGSM(model, 0.1))
    other = (labels + 1) % 10
    x = imgs.float() / 255
    ia, ia_t = score_two_labelings(model, x, labels, other, batch_size=128)
    assert (ia, ia_t) == (score(model, x, labels, batch_size=128), score(model, x, other, batch_size=128))
    clean, adv = clean_and_fgsm_correct(model, x[:10], labels[:10], 0.1)
    assert clean.device == x.device and clean.dim() == 0


@pytest.mark.slow
def test_gpu_bench_says_there_is_no_gpu_and_exits_cleanly():
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}  # hides any GPU
    out = subprocess.run([sys.executable, "bench/gpu.py"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert "no CUDA GPU visible" in out.stdout


@pytest.mark.slow  # seconds of computation (searches, attacks, training steps)
def test_gpu_bench_logic_on_cpu():
    sys.path.insert(0, str(ROOT))
    from bench import gpu

    r = gpu.measure("ml_sa_ia", "amp", "cpu", seconds=0, steps=1, batch=8, n=32)
    assert r["img_s"] > 0 and r["finite"]
    # 9 jobs, 12M images each: one slot runs them one after another; three slots in three waves.
    rates = {"baseline": 1000.0, "ml_sa": 500.0, "ml_sa_ia": 250.0}
    per_job = 200 * 60_000
    assert gpu.project(rates, 1) == pytest.approx(3 * per_job * (1 / 1000 + 1 / 500 + 1 / 250))
    assert gpu.project(rates, 3) == pytest.approx(per_job * (1 / 1000 + 1 / 500 + 1 / 250))
    assert gpu.project(rates, 4) == pytest.approx(per_job * (1 / 500 + 1 / 250 + 1 / 250))


@pytest.mark.slow
def test_evaluate_in_channels_last_hands_the_model_back_unchanged():
    from core.evaluate import evaluate

    torch.manual_seed(0)
    model = build_model("paper").eval()
    ds = load_dataset("synthetic", seed=0).with_subsets(64, 200, seed=0)
    config = RunConfig.resolve("ml_sa", "quick",
                               **{**TINY, "epochs": 2, "eval_ia": True, "arch": "paper", "test_subset": 200})
    fast = evaluate(model, ds.test, config)
    assert model.trunk[0].weight.is_contiguous()
    plain = evaluate(model, ds.test, config.replace(channels_last=False))
    # Same weights, another memory layout: the counts agree up to a rare rounding-level argmax flip.
    assert all(abs(fast[k].correct - plain[k].correct) <= 2 for k in plain) and fast.keys() == plain.keys()
