"""Tests for core.config (RunConfig: presets, variants, overrides, validation, keys) and core.device."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import torch

from core.config import (
    PRESETS,
    VARIANTS,
    ConfigError,
    RunConfig,
    coerce,
    describe_keys,
    field_names,
    parse_override,
)
from core.device import resolve_device, set_threads

# The objective table of docs/architecture.md: (w_clean, w_adv, lambda_sa, lambda_ia, lambda_norm)
OBJECTIVE_WEIGHTS = {
    "baseline": (0.5, 0.5, 0.0, 0.0, 0.0),
    "ml_sa": (0.5, 0.5, 0.5, 0.0, 1e-3),
    "ml_sa_ia": (0.5, 0.5, 0.5, 0.5, 1e-3),
}


def _weights(cfg: RunConfig) -> tuple[float, ...]:
    return (cfg.w_clean, cfg.w_adv, cfg.lambda_sa, cfg.lambda_ia, cfg.lambda_norm)


# ------------------------------------------------------------------------------------------------ presets


def test_paper_preset_values() -> None:
    cfg = RunConfig.resolve("baseline", "paper")
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.eps_s, cfg.embed_dim) == (1e-4, 256, 200, 0.3, 4)
    assert cfg.arch == "paper" and cfg.optimizer == "adam" and cfg.margin == 0.05
    assert cfg.preset == "paper" and cfg.variant == "baseline"


def test_quick_preset_is_cheaper_same_objective_and_robust_training() -> None:
    quick = RunConfig.resolve("ml_sa", "quick")
    paper = RunConfig.resolve("ml_sa", "paper")
    assert quick.epochs < paper.epochs
    assert quick.lr > paper.lr
    assert quick.embed_dim == paper.embed_dim
    # paper: the paper's FGSM at 0.3; quick: FGSM-RS at 0.1, robust in a few CPU epochs (docs/results.md)
    assert (paper.train_attack, paper.eps_s) == ("fgsm", 0.3)
    assert (quick.train_attack, quick.eps_s) == ("fgsm_rs", 0.1)
    assert RunConfig.resolve("ml_sa", "authors").train_attack == "fgsm"
    assert (quick.arch, paper.arch) == ("small", "paper")  # the fast architecture for CPU work
    assert _weights(quick) == _weights(paper)


def test_authors_preset_values() -> None:
    cfg = RunConfig.resolve("ml_sa", "authors")
    assert cfg.eps_s == pytest.approx(0.0031, abs=1e-4)  # their 0.01 in normalized units, in pixel units
    assert (cfg.lr, cfg.batch_size, cfg.embed_dim, cfg.margin) == (1e-4, 256, 4, 0.05)
    assert cfg.miner == "batch_hard" and cfg.negatives == "perturbed"
    assert (cfg.lambda_sa, cfg.lambda_norm) == (0.5, 1e-3)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_weights_follow_design_table(variant: str, preset: str) -> None:
    cfg = RunConfig.resolve(variant, preset)
    assert _weights(cfg) == pytest.approx(OBJECTIVE_WEIGHTS[variant])
    assert cfg.needs_invariance is (variant == "ml_sa_ia")


def test_unknown_variant_or_preset_is_an_error() -> None:
    with pytest.raises(ConfigError, match="baseline"):
        RunConfig.resolve("triplet", "quick")
    with pytest.raises(ConfigError, match="paper"):
        RunConfig.resolve("ml_sa", "slow")


# ------------------------------------------------------------------------------------ resolution order


def test_explicit_fields_override_preset_and_variant() -> None:
    cfg = RunConfig.resolve("ml_sa", "paper", epochs=3, lr=5e-4, lambda_sa=0.25, seed=2)
    assert (cfg.epochs, cfg.lr, cfg.lambda_sa, cfg.seed) == (3, 5e-4, 0.25, 2)
    assert cfg.batch_size == 256  # untouched preset value stays
    # None means "not given": the preset value stays
    assert RunConfig.resolve("ml_sa", "paper", epochs=None).epochs == 200


def test_overrides_override_explicit_preset_and_variant() -> None:
    cfg = RunConfig.resolve(
        "ml_sa", "paper", overrides=["epochs=5", "lambda_sa = 0.1", "eps_s=0.2"], epochs=3
    )
    assert cfg.epochs == 5  # override beats explicit field
    assert cfg.lambda_sa == 0.1  # override beats variant weight
    assert cfg.eps_s == 0.2  # override beats preset
    assert cfg.overrides == ["epochs=5", "lambda_sa = 0.1", "eps_s=0.2"]
    # later overrides win over earlier ones
    assert RunConfig.resolve("ml_sa", overrides=["lr=1e-2", "lr=3e-4"]).lr == 3e-4


def test_explicit_unknown_field_is_an_error() -> None:
    with pytest.raises(ConfigError, match="learning_rate"):
        RunConfig.resolve("ml_sa", "quick", learning_rate=0.1)


# ------------------------------------------------------------------------------------------ coercion


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("epochs=7", ("epochs", 7)),
        ("epochs=1e2", ("epochs", 100)),
        ("lr=1e-3", ("lr", 1e-3)),
        ("lr=0.5", ("lr", 0.5)),
        ("eps_s=3E-1", ("eps_s", 0.3)),
        ("normalize=true", ("normalize", True)),
        ("normalize=False", ("normalize", False)),
        ("normalize=1", ("normalize", True)),
        ("normalize=off", ("normalize", False)),
        ("eval_ia=yes", ("eval_ia", True)),
        ("train_subset=none", ("train_subset", None)),
        ("train_subset=500", ("train_subset", 500)),
        ("pgd_eps=None", ("pgd_eps", None)),
        ("pgd_eps=0.25", ("pgd_eps", 0.25)),
        ("threads=", ("threads", None)),
        ("data_dir=/tmp/mnist", ("data_dir", "/tmp/mnist")),
        ("arch=small", ("arch", "small")),
    ],
)
def test_override_type_coercion(item: str, expected: tuple[str, object]) -> None:
    key, value = parse_override(item)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


def test_coerced_override_lands_typed_in_config() -> None:
    cfg = RunConfig.resolve("ml_sa", overrides=["epochs=2", "lr=1e-3", "normalize=true", "test_subset=none"])
    assert cfg.epochs == 2 and isinstance(cfg.epochs, int)
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float)
    assert cfg.normalize is True and cfg.test_subset is None
    # explicit string values (e.g. from a CLI option) are coerced too
    cfg = RunConfig.resolve("ml_sa", epochs="9", lr="2e-4")  # type: ignore[arg-type]
    assert cfg.epochs == 9 and cfg.lr == 2e-4


@pytest.mark.parametrize(
    "item",
    ["epochs=ten", "epochs=2.5", "lr=fast", "lr=nan", "lr=inf", "normalize=maybe", "epochs=none", "arch=resnet"],
)
def test_wrong_type_or_value_is_config_error(item: str) -> None:
    key = item.split("=")[0]
    with pytest.raises(ConfigError, match=key):
        parse_override(item)


def test_wrong_python_types_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        coerce("arch", 5)
    with pytest.raises(ConfigError):
        coerce("epochs", True)
    with pytest.raises(ConfigError):
        coerce("epochs", 2.5)
    with pytest.raises(ConfigError):
        coerce("lr", False)
    assert coerce("epochs", 3.0) == 3  # an integral float is fine
    assert coerce("lr", 1) == 1.0 and isinstance(coerce("lr", 1), float)


@pytest.mark.parametrize("item", ["epochs=2.5e0", "seed=1e-3", "batch_size=2.55e1"])
def test_int_fields_reject_non_integral_scientific_strings(item: str) -> None:
    """An int field given a non-integral number must fail: "seed=1e-3" must not silently become seed 0."""
    with pytest.raises(ConfigError, match=item.split("=")[0]):
        parse_override(item)


@pytest.mark.parametrize(
    ("item", "range_text"),
    [
        ("eps_s=1.5", "[0.0, 1.0]"),
        ("eps_s=-0.1", "[0.0, 1.0]"),
        ("epochs=0", "[1, 10000]"),
        ("lr=-1", "[0.0, inf]"),
        ("momentum=1.5", "[0.0, 1.0]"),
        ("margin=3", "[0.0, 2.0]"),
        ("seed=-1", "[0, "),
    ],
)
def test_out_of_range_names_the_range(item: str, range_text: str) -> None:
    key = item.split("=")[0]
    with pytest.raises(ConfigError) as info:
        RunConfig.resolve("ml_sa", overrides=[item])
    message = str(info.value)
    assert key in message and "range" in message and range_text in message


def test_out_of_range_explicit_field_and_replace() -> None:
    with pytest.raises(ConfigError, match="eps_s"):
        RunConfig.resolve("ml_sa", eps_s=1.5)
    cfg = RunConfig.resolve("ml_sa")
    with pytest.raises(ConfigError, match="epochs"):
        cfg.replace(epochs=0)
    assert cfg.replace(epochs=1).epochs == 1


@pytest.mark.parametrize("item", ["lr", "lr 0.1", "", "epochs:3"])
def test_malformed_override_is_an_error(item: str) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_override(item)
    with pytest.raises(ConfigError):
        RunConfig.resolve("ml_sa", overrides=[item])


def test_unknown_override_key_suggests_and_points_to_config_keys() -> None:
    # issue #13: a "did you mean" and the command that lists every key, not all the keys in the error
    with pytest.raises(ConfigError) as info:
        RunConfig.resolve("ml_sa", overrides=["learning_rate=0.1"])
    message = str(info.value)
    assert "learning_rate" in message and "amltui config-keys" in message and "\n" not in message
    with pytest.raises(ConfigError, match="did you mean .*'lambda_ia'"):
        RunConfig.resolve("ml_sa", overrides=["lambda_ai=0.1"])


def test_overrides_key_cannot_be_overridden() -> None:
    with pytest.raises(ConfigError):
        parse_override("overrides=lr=1")


def test_ml_sa_ia_needs_positive_lambda_ia() -> None:
    with pytest.raises(ConfigError, match="lambda_ia"):
        RunConfig.resolve("ml_sa_ia", overrides=["lambda_ia=0"])
    with pytest.raises(ConfigError, match="lambda_ia"):
        RunConfig.resolve("ml_sa_ia", lambda_ia=0.0)
    # lambda_ia = 0 is fine for the variants that have no invariance term
    assert RunConfig.resolve("ml_sa", lambda_ia=0.0).lambda_ia == 0.0


# ---------------------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("variant", VARIANTS)
def test_to_dict_from_dict_round_trip_through_json(variant: str) -> None:
    cfg = RunConfig.resolve(variant, "paper", overrides=["lr=3e-4", "train_subset=100", "normalize=true"], seed=2)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert set(data) == set(field_names())
    back = RunConfig.from_dict(data)
    assert back == cfg
    assert back.group_key() == cfg.group_key()
    assert isinstance(back.epochs, int) and isinstance(back.lr, float)


def test_from_dict_unknown_key_is_an_error() -> None:
    data = RunConfig.resolve("ml_sa").to_dict()
    data["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match="learning_rate"):
        RunConfig.from_dict(data)


def test_from_dict_validates_values() -> None:
    data = RunConfig.resolve("ml_sa").to_dict()
    with pytest.raises(ConfigError, match="eps_s"):
        RunConfig.from_dict({**data, "eps_s": 2.0})
    with pytest.raises(ConfigError, match="epochs"):
        RunConfig.from_dict({**data, "epochs": "many"})
    with pytest.raises(ConfigError, match="lambda_ia"):
        RunConfig.from_dict({**data, "variant": "ml_sa_ia", "lambda_ia": 0.0})


# ---------------------------------------------------------------------------------------------- keys


def test_group_key_ignores_seed_and_runtime_but_not_science() -> None:
    base = RunConfig.resolve("ml_sa", "quick", seed=0, device="cpu")
    same = RunConfig.resolve("ml_sa", "quick", seed=2, device="auto", threads=3, data_dir="/elsewhere")
    assert base.group_key() == same.group_key()
    assert base.group_key() != RunConfig.resolve("ml_sa", "quick", lr=3e-4).group_key()
    assert base.group_key() != RunConfig.resolve("ml_sa", "quick", eps_s=0.2).group_key()
    assert base.group_key() != RunConfig.resolve("baseline", "quick").group_key()
    # how a value was given does not matter, only the value
    assert RunConfig.resolve("ml_sa", lr=3e-4).group_key() == RunConfig.resolve(
        "ml_sa", overrides=["lr=3e-4"]).group_key()


def test_context_key_ignores_variant_but_not_setting() -> None:
    keys = {RunConfig.resolve(v, "quick", seed=s).context_key() for v in VARIANTS for s in (0, 1)}
    assert len(keys) == 1
    base = RunConfig.resolve("baseline", "quick")
    assert base.context_key() != RunConfig.resolve("baseline", "quick", eps_s=0.2).context_key()
    assert base.context_key() != RunConfig.resolve("baseline", "quick", lr=3e-4).context_key()
    assert base.context_key() != RunConfig.resolve("baseline", "paper").context_key()


def test_distance_key_is_hashed_only_when_not_the_default_and_pairs_with_one_baseline() -> None:
    """Runs made before the key existed keep their group (and reuse) with new abs_cos runs; a baseline has no
    triplet, so ml_sa at either distance pairs with the same baseline."""
    base = RunConfig.resolve("ml_sa", "quick")
    assert base.distance == "abs_cos"
    legacy = {k: v for k, v in base.to_dict().items() if k != "distance"}  # a config.json from before the key
    assert RunConfig.from_dict(legacy).group_key() == base.group_key()
    signed = RunConfig.resolve("ml_sa", "quick", overrides=["distance=cos"])
    assert signed.group_key() != base.group_key()
    assert signed.context_key() == base.context_key() == RunConfig.resolve("baseline", "quick").context_key()
    assert signed.diff_from_preset() == {"distance": "cos"}
    with pytest.raises(ConfigError, match="abs_cos"):
        RunConfig.resolve("ml_sa", "quick", overrides=["distance=euclid"])


def test_diff_from_preset_shows_only_changed_science() -> None:
    cfg = RunConfig.resolve("ml_sa", "quick", overrides=["lr=3e-4"], seed=2, device="cpu")
    assert cfg.diff_from_preset() == {"lr": 3e-4}
    assert RunConfig.resolve("baseline", "paper").diff_from_preset() == {}


def test_effective_pgd_eps() -> None:
    assert RunConfig.resolve("ml_sa", eps_s=0.2).effective_pgd_eps == 0.2
    assert RunConfig.resolve("ml_sa", eps_s=0.2, pgd_eps=0.1).effective_pgd_eps == 0.1


def test_describe_keys_lists_every_field() -> None:
    text = describe_keys()
    lines = text.splitlines()
    listed = [line.split(" ", 1)[0] for line in lines]
    assert listed == [name for name in field_names() if name != "overrides"]
    by_key = dict(zip(listed, lines, strict=True))
    assert "baseline|ml_sa|ml_sa_ia" in by_key["variant"]
    assert "[0.0, 1.0]" in by_key["eps_s"] and "float" in by_key["eps_s"]
    assert "int" in by_key["epochs"] and "[1, 10000]" in by_key["epochs"]
    assert "none" in by_key["train_subset"]  # optional fields say so


# ------------------------------------------------------------------------------------------------ device


def test_resolve_device_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    assert resolve_device() == expected


def test_auto_is_cpu_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_gpu_names_the_fix(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cpu"):
        resolve_device(spec)


def test_cuda_index_beyond_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda:0")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="1 GPU"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("spec", ["gpu", "tpu", "cpu0", "mps:x"])
def test_garbage_device_is_an_error(spec: str) -> None:
    with pytest.raises(ValueError, match="auto, cpu"):
        resolve_device(spec)


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("restore_threads")
def test_set_threads_returns_thread_count() -> None:
    assert set_threads(1) == 1 == torch.get_num_threads()
    assert set_threads(2) == 2 == torch.get_num_threads()
    assert set_threads(0) == 1  # clamped to at least one
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    assert set_threads(None) == expected
