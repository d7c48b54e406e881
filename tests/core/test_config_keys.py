"""Each config key is declared once (core/config.py) with its description; choices come from core/registry.py."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from amltui.cli import app
from core import registry
from core.config import CHOICES, PRESETS, ConfigError, RunConfig, key_specs, preset_defaults
from tests.helpers import ROOT


def test_every_field_has_a_real_description() -> None:
    for f in dataclasses.fields(RunConfig):
        text = f.metadata.get("help", "")
        assert len(text) >= 15 and "\n" not in text, f"{f.name} needs a one-line description"
    assert [s.name for s in key_specs()] == [f.name for f in dataclasses.fields(RunConfig) if f.name != "overrides"]


def test_choices_are_the_registries() -> None:
    assert CHOICES["variant"] is registry.VARIANTS and tuple(registry.VARIANT_WEIGHTS) == registry.VARIANTS
    assert CHOICES["arch"] is registry.ARCHITECTURES
    assert CHOICES["dataset"] is registry.DATASETS
    assert CHOICES["train_attack"] is registry.TRAIN_ATTACKS
    assert CHOICES["inv_mode"] is registry.INVARIANCE_MODES
    assert CHOICES["miner"] == tuple(registry.MINERS)


def test_the_torch_modules_implement_exactly_the_registered_names() -> None:
    from core.attacks.invariance_search import MODES
    from core.attacks.training import TRAIN_ATTACKS
    from core.data import DATASETS
    from core.losses import VARIANT_WEIGHTS, Miner
    from core.models import ARCHITECTURES

    assert tuple(ARCHITECTURES) == registry.ARCHITECTURES
    assert (DATASETS, TRAIN_ATTACKS, MODES) == (registry.DATASETS, registry.TRAIN_ATTACKS, registry.INVARIANCE_MODES)
    assert {k: dataclasses.asdict(v) for k, v in VARIANT_WEIGHTS.items()} == registry.VARIANT_WEIGHTS
    for name in registry.MINERS:
        assert isinstance(registry.make_miner(name), Miner)
    with pytest.raises(ValueError, match="hardest, random, batch_hard"):
        registry.make_miner("semihard")


def test_validation_refuses_what_the_invariance_generator_refuses() -> None:
    from core.attacks.invariance import linf_combine

    with pytest.raises(ConfigError, match=r"inv_eps=0.0 is out of range: expected a value in \(0.0, 1.0\]"):
        RunConfig.resolve(overrides=["inv_eps=0"])
    import torch

    with pytest.raises(ValueError, match=r"\(0.0, 1.0\]"):
        linf_combine(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 0.0)
    assert RunConfig.resolve(overrides=["eps_s=0"]).eps_s == 0.0  # an attack of budget 0 is a clean control


def test_preset_defaults_follow_the_presets_and_variant() -> None:
    assert preset_defaults("paper")["epochs"] == 200 and preset_defaults("quick")["epochs"] == 8
    assert preset_defaults("authors")["miner"] == "batch_hard"
    assert preset_defaults("quick", "baseline")["lambda_sa"] == 0.0
    assert "overrides" not in preset_defaults("quick")


def test_config_keys_prints_descriptions_and_per_preset_defaults() -> None:
    result = CliRunner().invoke(app, ["config-keys"])
    assert result.exit_code == 0, result.output
    for spec in key_specs():
        assert f"{spec.name} ({spec.type})" in result.output and spec.help in result.output
    block = result.output.split("\nepochs (int)", 1)[1].split("\n")
    assert block[2].split() == ["default:", *(f"{p}={e}" for p, e in zip(PRESETS, ("200", "8", "200"), strict=True))]
    bad = CliRunner().invoke(app, ["config-keys", "--variant", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output


@pytest.mark.slow
def test_the_key_table_and_the_write_helper_load_no_torch() -> None:
    import os
    import subprocess
    import sys

    root = ROOT

    code = ("import sys, core.config, core.registry, core.fsio, core.metrics, amltui.app.fsutil; "
            "core.config.key_specs(); core.config.preset_defaults('paper'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.stdout.strip() == "False"


def test_config_keys_says_the_bundled_sample_size_and_that_x_q_is_the_positive() -> None:
    from core.data import load_dataset

    out = " ".join(CliRunner().invoke(app, ["config-keys"]).output.split())
    sample = load_dataset("mnist-sample")
    assert (len(sample.train), len(sample.test)) == (4000, 1000)
    assert "(bundled 4,000/1,000 subset)" in out and "2,000" not in out
    assert "invariance triplet (anchor x, positive x_q;" in out and "negative x_q" not in out
