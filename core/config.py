"""RunConfig: one flat, typed record of everything a run depends on, saved with every result.

Resolution order: preset → variant weights → explicit fields → ``key=value`` overrides; then validation.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

VARIANTS = ("baseline", "ml_sa", "ml_sa_ia")
PRESETS = ("paper", "quick", "authors")

# (w_clean, w_adv, lambda_sa, lambda_ia, lambda_norm): the objective of each variant (DESIGN §1).
VARIANT_DEFAULTS: dict[str, dict[str, float]] = {
    "baseline": dict(w_clean=0.5, w_adv=0.5, lambda_sa=0.0, lambda_ia=0.0, lambda_norm=0.0),
    "ml_sa": dict(w_clean=0.5, w_adv=0.5, lambda_sa=0.5, lambda_ia=0.0, lambda_norm=1e-3),
    "ml_sa_ia": dict(w_clean=0.5, w_adv=0.5, lambda_sa=0.5, lambda_ia=0.5, lambda_norm=1e-3),
}

PRESET_VALUES: dict[str, dict[str, Any]] = {
    # The paper's hyperparameters (docs/results.md), on the full MNIST (offline: --data-dir with the four idx
    # files) and with the exact invariance search. Its threat model (ε_s = 0.3 in pixel units) is this project's
    # reading of the paper; the authors' own runs differ (see the `authors` preset and amltui/app/paper.py).
    "paper": dict(arch="paper", epochs=200, lr=1e-4, batch_size=256, eps_s=0.3, embed_dim=4, dataset="mnist",
                  inv_mode="exact", train_attack="fgsm"),
    # A *robust* model in minutes on 2 CPU cores: the same objective and 4-d embedding on the fast "small"
    # architecture, 10× the learning rate, smaller batches (more steps on small data), 8 epochs, PGD on a
    # 1,000-image test subset (PGD-40 on the whole test set costs more than the training on a CPU). FGSM-RS at
    # ε_s 0.1: at 0.3 (or with plain FGSM at 0.2-0.3) these few CPU epochs only mask gradients (A_PGD ≈ 0-35%);
    # the measured table behind this choice is in docs/results.md, "Choosing the quick preset".
    "quick": dict(arch="small", epochs=8, lr=1e-3, batch_size=64, eps_s=0.1, train_attack="fgsm_rs", embed_dim=4,
                  pgd_subset=1000),
    # The authors' released hyperparameters (eczy/sensitivity-invariance-tradeoff), without their bugs:
    # their FGSM step of 0.01 in normalized units is ≈ 0.0031 in pixel units; batch-hard mining over the
    # perturbed embeddings.
    "authors": dict(arch="paper", epochs=200, lr=1e-4, batch_size=256, eps_s=0.01 * 0.3081, embed_dim=4,
                    miner="batch_hard", negatives="perturbed", train_attack="fgsm"),
}

CHOICES: dict[str, tuple[str, ...]] = {
    "variant": VARIANTS,
    "preset": PRESETS,
    "arch": ("paper", "small"),
    "optimizer": ("adam", "sgd"),
    "miner": ("hardest", "random", "batch_hard"),
    "negatives": ("natural", "perturbed"),
    "inv_mode": ("exact", "fast"),
    "dataset": ("mnist", "fashion-mnist", "mnist-sample", "synthetic"),
    "train_attack": ("fgsm", "fgsm_rs", "pgd"),
    "select": ("last", "best_pgd"),
    "mask_rule": ("gap_or_collapse", "gap", "collapse", "off"),
}

# Inclusive numeric ranges; None = unbounded on that side.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "seed": (0, 2**31 - 1),
    "epochs": (1, None),
    "batch_size": (1, None),
    "eval_batch_size": (1, None),
    "lr": (0.0, None),
    "weight_decay": (0.0, None),
    "momentum": (0.0, 1.0),
    "embed_dim": (1, None),
    "eps_s": (0.0, 1.0),
    "inv_eps": (0.0, 1.0),
    "pgd_eps": (0.0, 1.0),
    "pgd_alpha": (0.0, 1.0),
    "pgd_steps": (1, None),
    "pgd_subset": (1, None),
    "aa_subset": (1, None),
    "margin": (0.0, 2.0),
    "w_clean": (0.0, None),
    "w_adv": (0.0, None),
    "lambda_sa": (0.0, None),
    "lambda_ia": (0.0, None),
    "lambda_norm": (0.0, None),
    "train_subset": (1, None),
    "test_subset": (1, None),
    "threads": (1, None),
    "train_alpha": (0.0, 1.0),
    "train_steps": (1, None),
    "monitor_pgd": (0, None),
    "monitor_pgd_steps": (1, None),
    "holdout": (0, None),
    "mask_gap": (0.0, 100.0),
    "mask_collapse": (0.0, 100.0),
    "log_every": (1, None),
}

# Not part of what a result depends on: where it ran, and the seed (aggregated over).
NON_SCIENTIFIC = ("seed", "device", "threads", "data_dir", "eval_batch_size", "deterministic",
                  # the gradient-masking rule only labels a finished run (core/flags.py); it changes no number
                  "mask_rule", "mask_gap", "mask_collapse",
                  # speed only (core/step.py): same values up to float rounding
                  "compile", "cudnn_benchmark", "channels_last", "log_every")
# What to evaluate after training, not what is trained: outside the hashes, so runs made before these keys existed
# (or with A_AA off) still pool and are reused by `reproduce`. A_AA's own record says its version and n.
EVAL_ONLY = ("eval_aa", "aa_version", "aa_subset")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


@dataclass
class RunConfig:
    variant: str = "ml_sa"
    preset: str = "quick"
    seed: int = 0
    # data
    dataset: str = "mnist-sample"
    data_dir: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    # model
    arch: str = "small"
    embed_dim: int = 4
    normalize: bool = False
    # optimisation
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    # objective
    eps_s: float = 0.3
    # training attack making x_p (README, "Robust training"): fgsm (the paper's) | fgsm_rs (Wong et al.
    # 2020, random start + one step of train_alpha, default 1.25·eps_s) | pgd (train_steps steps of train_alpha,
    # default 2.5·eps_s/train_steps, random start; Madry et al. 2018)
    train_attack: str = "fgsm"
    train_alpha: float | None = None
    train_steps: int = 7
    w_clean: float = 0.5
    w_adv: float = 0.5
    lambda_sa: float = 0.5
    lambda_ia: float = 0.0
    lambda_norm: float = 1e-3
    margin: float = 0.05
    miner: str = "hardest"
    negatives: str = "natural"
    # invariance examples (Tramèr et al.)
    inv_eps: float = 0.3
    inv_mode: str = "fast"
    # evaluation
    eval_ia: bool = True  # A_IA and A_IA→target on the test split's invariance set (generated once, cached)
    eval_batch_size: int = 1000
    pgd_eps: float | None = None  # None = eps_s
    pgd_steps: int = 40
    pgd_alpha: float = 0.01
    pgd_subset: int | None = None  # None = the whole test set
    eval_aa: bool = False  # A_AA (AutoAttack at eps_s, torchattacks) in the run's final evaluation; slow on CPU
    aa_version: str = "standard"  # standard | plus | rand | a comma-separated list, e.g. apgd-ce,square
    aa_subset: int | None = 1000  # stratified test images for A_AA, curves and checks; None = the whole test set
    # per-epoch robustness monitor and model selection (core/train.py)
    monitor_pgd: int = 200  # images of the monitor scored by PGD each epoch (0 = no PGD monitor)
    monitor_pgd_steps: int = 10
    holdout: int = 0  # training images held out (stratified, fixed seed) as the monitor; needed by best_pgd
    select: str = "last"  # last | best_pgd: the epoch with the best hold-out PGD accuracy (Wong et al.)
    # gradient-masking flag (core/flags.py)
    mask_rule: str = "gap_or_collapse"
    mask_gap: float = 30.0  # A_SA − A_PGD (points) above which the final model is flagged
    mask_collapse: float = 30.0  # one-epoch drop of the monitor's PGD accuracy (points) with FGSM holding
    # runtime
    device: str = "auto"
    threads: int | None = None
    deterministic: bool = False  # deterministic CUDA kernels (cuDNN, cuBLAS): slower; see core/device.py
    # speed (core/step.py; README "Speed and GPUs"). amp changes float rounding, so it is part of the group key.
    amp: bool = False  # bf16 autocast for the objective's forward; attacks and loss stay float32
    compile: bool = False  # torch.compile the model's embedding (trunk) for the training step
    cudnn_benchmark: bool = False  # cuDNN autotuning on CUDA (faster convs; resume is then not bit-exact)
    channels_last: bool = True  # conv models in channels_last memory format (same values, faster convs)
    log_every: int | None = None  # batches between host syncs (loss check, progress); None: 1 on CPU, 50 on GPU
    overrides: list[str] = field(default_factory=list)

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def resolve(
        cls, variant: str = "ml_sa", preset: str = "quick", overrides: list[str] | None = None, **explicit: Any
    ) -> RunConfig:
        """Build a config from a preset, a variant, explicit fields (None = not given) and overrides."""
        _check_choice("variant", variant)
        _check_choice("preset", preset)
        values: dict[str, Any] = dict(variant=variant, preset=preset)
        values.update(PRESET_VALUES[preset])
        values.update(VARIANT_DEFAULTS[variant])
        for key, value in explicit.items():
            if value is not None:
                _check_key(key)
                values[key] = value
        overrides = list(overrides or [])
        for item in overrides:
            key, value = parse_override(item)
            values[key] = value
        values["overrides"] = overrides
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Load a saved config; unknown keys are an error (a newer amltui wrote it, or it was edited)."""
        unknown = sorted(set(data) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys: {', '.join(field_names())}")
        config = cls(**{k: coerce(k, v) if k != "overrides" else list(v) for k, v in data.items()})
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config

    # ---- checks -------------------------------------------------------------------------------------
    def validate(self) -> None:
        for f in fields(self):
            if f.name == "overrides":
                continue
            value = getattr(self, f.name)
            setattr(self, f.name, coerce(f.name, value))
        self._check_aa_version()
        if self.variant == "ml_sa_ia" and self.lambda_ia <= 0:
            raise ConfigError("variant ml_sa_ia needs lambda_ia > 0 (use variant ml_sa for no invariance term)")
        if self.select == "best_pgd" and (self.holdout < 1 or self.monitor_pgd < 1):
            raise ConfigError("select=best_pgd picks the epoch by PGD accuracy on a hold-out carved from the "
                              "training data, never the test split: add e.g. --set holdout=500 (and keep "
                              "monitor_pgd > 0)")

    def _check_aa_version(self) -> None:
        from core.aa_spec import parse_aa_version  # no torch: configs load in the CLI's listings

        try:
            self.aa_version, _ = parse_aa_version(self.aa_version)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def effective_pgd_eps(self) -> float:
        return self.eps_s if self.pgd_eps is None else self.pgd_eps

    @property
    def needs_invariance(self) -> bool:
        return self.lambda_ia > 0

    def group_key(self) -> str:
        """Hash of everything but the seed and the runtime: runs with equal keys may be pooled over seeds."""
        data = {k: v for k, v in self.to_dict().items()
                if k not in NON_SCIENTIFIC and k not in EVAL_ONLY and k != "overrides"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def context_key(self) -> str:
        """Like group_key but blind to the variant and its loss weights: runs to pair with a baseline."""
        blind = set(NON_SCIENTIFIC) | set(EVAL_ONLY) | {"overrides", "variant", *VARIANT_DEFAULTS["baseline"]}
        data = {k: v for k, v in self.to_dict().items() if k not in blind}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def diff_from_preset(self) -> dict[str, Any]:
        """Fields that differ from the plain preset + variant: what a table must show to tell rows apart."""
        base = RunConfig.resolve(self.variant, self.preset)
        return {
            k: v for k, v in self.to_dict().items()
            if k not in (*NON_SCIENTIFIC, *EVAL_ONLY, "overrides", "dataset") and getattr(base, k) != v
        }


# ---- helpers ------------------------------------------------------------------------------------------
def field_names() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def describe_keys() -> str:
    """One line per key: type, choices or range. Used in error messages and `amltui run --help`."""
    hints = typing.get_type_hints(RunConfig)
    lines = []
    for name in field_names():
        if name == "overrides":
            continue
        text = f"{name} ({_type_name(hints[name])})"
        if name in CHOICES:
            text += ": " + "|".join(CHOICES[name])
        elif name in RANGES:
            lo, hi = RANGES[name]
            text += f": [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        lines.append(text)
    return "\n".join(lines)


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``key=value`` into a validated, typed pair."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. lr=3e-4)")
    key, raw = (s.strip() for s in item.split("=", 1))
    _check_key(key)
    if key == "overrides":
        raise ConfigError("'overrides' cannot itself be overridden")
    return key, coerce(key, raw)


@functools.lru_cache(maxsize=1)
def _type_hints() -> dict[str, Any]:
    # Evaluating the annotations costs ~1 ms per call; resolving a config coerces every key (queueing 500 runs).
    return typing.get_type_hints(RunConfig)


_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]{1,3})?")


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` (possibly a string from the command line) to the type of ``key``, checking it."""
    _check_key(key)
    hint = _type_hints()[key]
    base, optional = _unwrap_optional(hint)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if not optional:
            raise ConfigError(f"{key} cannot be empty; expected {_type_name(hint)}")
        return None
    try:
        converted = _convert(base, value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a valid {_type_name(hint)}") from None
    if key in CHOICES and converted not in CHOICES[key]:
        raise ConfigError(f"{key}={converted!r} is not one of: {', '.join(CHOICES[key])}")
    if key == "device" and not _DEVICE.fullmatch(converted.strip().lower()):
        # Checked here, not when the run starts: a bad device must not leave a queued run behind.
        raise ConfigError(f"device={converted!r} is not a device: use auto, cpu, cuda or cuda:N")
    if key in RANGES:
        lo, hi = RANGES[key]
        if (lo is not None and converted < lo) or (hi is not None and converted > hi):
            raise ConfigError(
                f"{key}={converted} is out of range: expected a value in [{lo}, {'inf' if hi is None else hi}]"
            )
    return converted


def _convert(base: type, value: Any) -> Any:
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if base is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        if isinstance(value, str) and "e" in value.lower():
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        return int(value)
    if base is float:
        if isinstance(value, bool):
            raise ValueError(value)
        result = float(value)
        if result != result or result in (float("inf"), float("-inf")):
            raise ValueError(value)
        return result
    if base is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    raise TypeError(base)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _type_name(hint: Any) -> str:
    base, optional = _unwrap_optional(hint)
    name = getattr(base, "__name__", str(base))
    return f"{name} or none" if optional else name


def _check_key(key: str) -> None:
    if key not in field_names():
        raise ConfigError(f"unknown config key {key!r}. Valid keys:\n{describe_keys()}")


def _check_choice(key: str, value: str) -> None:
    if value not in CHOICES[key]:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(CHOICES[key])}")
