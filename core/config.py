"""RunConfig: one flat, typed record of everything a run depends on, saved with every result.

Resolution order: preset → variant weights → explicit fields → ``key=value`` overrides; then validation.

Each key is declared once, below, with ``key(default, help, choices, bound=...)``: its type is the annotation, its
choices and ε bounds come from core/registry.py. CHOICES, RANGES, validation, ``key_specs()`` (for the
dashboard's form) and ``key_reference()`` (`amltui config-keys`) are all derived from those declarations.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from core import registry
from core.checks import FGSM_PGD_GAP
from core.registry import ATTACK_EPS, INVARIANCE_EPS, Bound

VARIANTS = registry.VARIANTS
PRESETS = registry.PRESETS
VARIANT_DEFAULTS: dict[str, dict[str, float]] = registry.VARIANT_WEIGHTS  # the objective of each variant

PRESET_VALUES: dict[str, dict[str, Any]] = {
    # The paper's hyperparameters (docs/results.md), on the full MNIST (offline: --data-dir with the four idx
    # files) and with the exact invariance search. Its threat model (ε_s = 0.3 in pixel units) is this project's
    # reading of the paper; the authors' own runs differ (see the `authors` preset and amltui/app/results/paper.py).
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

# Not part of what a result depends on: where it ran, and the seed (aggregated over).
NON_SCIENTIFIC = ("seed", "device", "threads", "data_dir", "eval_batch_size", "deterministic",
                  # the gradient-masking rule only labels a finished run (core/flags.py); it changes no number
                  "mask_rule", "mask_gap", "mask_collapse",
                  # speed only (core/step.py): same values up to float rounding
                  "compile", "cudnn_benchmark", "channels_last", "log_every")
# What to evaluate after training, not what is trained: outside the hashes, so runs made before these keys existed
# (or with A_AA off) still pool and are reused by `reproduce`. A_AA's own record says its version and n.
EVAL_ONLY = ("eval_aa", "aa_version", "aa_subset")
# Keys added after runs existed, hashed only when they differ from the behaviour those runs had: a run made before
# the key keeps its group (reuse, pooling over seeds) with the new runs of the same setting.
HASHED_UNLESS_DEFAULT = {"distance": "abs_cos"}


# Stated maxima (docs/reliability.md): far above any real run, low enough that a typo is refused at once instead of
# training for years, spawning a billion threads or asking for more images than any dataset has.
MAX_EPOCHS = 10_000
MAX_THREADS = 1024
MAX_IMAGES = 10_000_000  # subsets and the hold-out; preflight also checks them against the split's real size


def _B(low: float | None, high: float | None = None) -> Bound:  # noqa: N802  (reads like the type it builds)
    return Bound(low, high)


def key(default: Any, help: str, choices: tuple[str, ...] | None = None, *, bound: Bound | None = None) -> Any:
    """Declare a config key once: its default, one-line description, choices or bound (validation, `amltui
    config-keys` and the dashboard's form are generated from this)."""
    return field(default=default, metadata={"help": help, "choices": choices, "bound": bound})


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


@dataclass
class RunConfig:
    variant: str = key("ml_sa", "the objective: baseline (CE on clean + adversarial), ml_sa (+ sensitivity "
                       "triplet), ml_sa_ia (+ invariance triplet); sets the five weights below", VARIANTS)
    preset: str = key("quick", "the hyperparameter preset the other defaults come from (README.md, Presets)", PRESETS)
    seed: int = key(0, "seed of the initial weights, batch order, mining and attack random starts",
                    bound=_B(0, 2**31 - 1))
    # data
    dataset: str = key("mnist-sample", "the images: mnist, fashion-mnist (idx files, --data-dir), mnist-sample "
                       "(bundled 4,000/1,000 subset) or synthetic (generated, for tests)", registry.DATASETS)
    data_dir: str | None = key(None, "folder holding the four idx files of mnist/fashion-mnist; none = the "
                               "usual places (the error names them)")
    train_subset: int | None = key(None, "train on a stratified subset of this many images; none = all",
                                   bound=_B(1, MAX_IMAGES))
    test_subset: int | None = key(None, "evaluate on a stratified subset of this many test images; none = all",
                                  bound=_B(1, MAX_IMAGES))
    # model
    arch: str = key("small", "architecture: paper (2 convs + 3 FC, PReLU) or small (Wong et al.'s fast MNIST net)",
                    registry.ARCHITECTURES)
    embed_dim: int = key(4, "size of the penultimate embedding h(x) the triplets act on", bound=_B(1))
    normalize: bool = key(False, "standardize inputs with the MNIST mean/std inside the model (attacks still see "
                          "[0, 1] pixels)")
    # optimisation
    epochs: int = key(8, "training epochs", bound=_B(1, MAX_EPOCHS))
    batch_size: int = key(64, "training images per batch", bound=_B(1))
    lr: float = key(1e-3, "learning rate of the optimizer", bound=_B(0.0))
    optimizer: str = key("adam", "optimizer: adam or sgd (with momentum)", registry.OPTIMIZERS)
    weight_decay: float = key(0.0, "L2 weight decay of the optimizer", bound=_B(0.0))
    momentum: float = key(0.9, "SGD momentum (unused by adam)", bound=_B(0.0, 1.0))
    # objective
    eps_s: float = key(0.3, "ε_s, the L∞ budget (pixels of [0, 1] images) of the training attack and of A_SA",
                       bound=ATTACK_EPS)
    # docs/robustness.md, "Robust training": fgsm_rs is Wong et al. 2020, pgd Madry et al. 2018
    train_attack: str = key("fgsm", "attack making x_p: fgsm (the paper's), fgsm_rs (random start + one step) or "
                            "pgd (train_steps steps from a random start)", registry.TRAIN_ATTACKS)
    train_alpha: float | None = key(None, "step of fgsm_rs/pgd training; none = 1.25·eps_s (fgsm_rs) or "
                                    "2.5·eps_s/train_steps (pgd)", bound=ATTACK_EPS)
    train_steps: int = key(7, "steps of pgd training", bound=_B(1))
    w_clean: float = key(0.5, "weight of the cross-entropy on clean images (set by the variant)", bound=_B(0.0))
    w_adv: float = key(0.5, "weight of the cross-entropy on x_p (set by the variant)", bound=_B(0.0))
    lambda_sa: float = key(0.5, "weight of the sensitivity triplet (anchor x, positive x_p; set by the variant)",
                           bound=_B(0.0))
    lambda_ia: float = key(0.0, "weight of the invariance triplet (anchor x, positive x_q; set by the variant; "
                           "> 0 builds invariance sets)", bound=_B(0.0))
    lambda_norm: float = key(1e-3, "weight of the feature-norm term of the triplets' embeddings (set by the "
                             "variant)", bound=_B(0.0))
    margin: float = key(0.05, "margin of the angular triplet loss", bound=_B(0.0, 2.0))
    miner: str = key("hardest", "triplet miner: hardest negative, random negative or batch_hard (the authors')",
                     tuple(registry.MINERS))
    negatives: str = key("natural", "triplet negative candidates: natural h(x) or perturbed h(x_p) embeddings",
                         registry.NEGATIVES)
    distance: str = key("abs_cos", "triplet distance: abs_cos = 1 − |cos| (the paper's Eq. 1) or cos = 1 − cos "
                        "(signed: h and −h far apart)", registry.DISTANCES)
    # invariance examples (Tramèr et al.)
    inv_eps: float = key(0.3, "L∞ budget (pixels) of the invariance examples x_q; must be > 0", bound=INVARIANCE_EPS)
    inv_mode: str = key("fast", "invariance neighbour search: exact (all pairs) or fast (indexed, agreement "
                        "measured)", registry.INVARIANCE_MODES)
    # evaluation
    eval_ia: bool = key(True, "score A_IA and A_IA→target on the test split's invariance set (generated once, "
                        "cached)")
    eval_batch_size: int = key(1000, "images per batch in evaluation (speed only)", bound=_B(1))
    pgd_eps: float | None = key(None, "L∞ budget of the A_PGD evaluation; none = eps_s", bound=ATTACK_EPS)
    pgd_steps: int = key(40, "steps of the A_PGD evaluation", bound=_B(1))
    pgd_alpha: float = key(0.01, "step size of the A_PGD evaluation", bound=ATTACK_EPS)
    pgd_subset: int | None = key(None, "test images scored by A_PGD (stratified); none = the whole test set",
                                 bound=_B(1))
    eval_aa: bool = key(False, "score A_AA (AutoAttack at eps_s, torchattacks components) in the final evaluation; "
                        "slow on CPU")
    aa_version: str = key("standard", "AutoAttack version: standard (Croce & Hein's: APGD-CE/APGD-T/FAB-T 100 it., "
                          "Square 5000 queries), plus, rand; standard-fast, plus-fast, rand-fast (torchattacks' "
                          "10-iteration ensembles); or a comma-separated list, e.g. apgd-ce,square or "
                          "apgd-ce:50,square:1000 (iterations/queries; default 100/5000)")
    aa_subset: int | None = key(1000, "stratified test images for A_AA, curves and checks; none = the whole test "
                                "set", bound=_B(1))
    # per-epoch robustness monitor and model selection (core/train.py)
    monitor_pgd: int = key(200, "monitor images scored by PGD after each epoch (0 = no PGD monitor)", bound=_B(0))
    monitor_pgd_steps: int = key(10, "PGD steps of the per-epoch monitor", bound=_B(1))
    holdout: int = key(0, "training images held out (stratified, fixed seed) as the monitor; needed by best_pgd",
                       bound=_B(0, MAX_IMAGES))
    select: str = key("last", "the weights kept: last epoch, or best_pgd (best hold-out PGD accuracy, Wong et al.)",
                      registry.SELECTIONS)
    # gradient-masking flag (core/flags.py)
    mask_rule: str = key("gap_or_collapse", "when a finished run is flagged as gradient-masked: gap, collapse, "
                         "either, or off", registry.MASK_RULES)
    mask_gap: float = key(FGSM_PGD_GAP, "FGSM − PGD accuracy at one ε (points) above which the final model is flagged "
                          "(and sanity check (d) fails)", bound=_B(0.0, 100.0))
    mask_collapse: float = key(30.0, "one-epoch drop of the monitor's PGD accuracy (points), FGSM holding, that "
                               "flags the run", bound=_B(0.0, 100.0))
    # runtime
    device: str = key("auto", "where to train: auto, cpu, cuda or cuda:N")
    threads: int | None = key(None, "torch CPU threads; none = torch's default", bound=_B(1, MAX_THREADS))
    deterministic: bool = key(False, "deterministic CUDA kernels (cuDNN, cuBLAS): slower, bit-exact resume on GPU "
                              "(core/device.py)")
    # speed (core/step.py; docs/gpus.md, "Speed and GPUs"). amp changes float rounding, so it is part of the group key.
    amp: bool = key(False, "bf16 autocast for the objective's forward; attacks and loss stay float32")
    compile: bool = key(False, "torch.compile the model's embedding for the training step")
    cudnn_benchmark: bool = key(False, "cuDNN autotuning on CUDA (faster convs; resume is then not bit-exact)")
    channels_last: bool = key(True, "conv models in channels_last memory format (same values, faster convs)")
    log_every: int | None = key(None, "batches between host syncs (loss check, progress); none = 1 on CPU, 50 on "
                                "GPU", bound=_B(1))
    overrides: list[str] = field(default_factory=list, metadata={"help": "the --set key=value items applied last"})

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
        if not isinstance(data, dict):  # `[]` must not silently become the default config
            raise ConfigError(f"a config is a JSON object of key: value, not a JSON {type(data).__name__}")
        overrides = data.get("overrides", [])
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise ConfigError(f"config key overrides is {overrides!r}, expected a list of key=value texts")
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
                if k not in NON_SCIENTIFIC and k not in EVAL_ONLY and k != "overrides"
                and not (k in HASHED_UNLESS_DEFAULT and v == HASHED_UNLESS_DEFAULT[k])}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def context_key(self) -> str:
        """Like group_key but blind to the variant, its loss weights and the triplet distance (a baseline has no
        triplet): runs to pair with a baseline."""
        blind = set(NON_SCIENTIFIC) | set(EVAL_ONLY) | {"overrides", "variant", "distance",
                                                        *VARIANT_DEFAULTS["baseline"]}
        data = {k: v for k, v in self.to_dict().items() if k not in blind}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def diff_from_preset(self) -> dict[str, Any]:
        """Fields that differ from the plain preset + variant: what a table must show to tell rows apart."""
        base = RunConfig.resolve(self.variant, self.preset)
        return {
            k: v for k, v in self.to_dict().items()
            if k not in (*NON_SCIENTIFIC, *EVAL_ONLY, "overrides", "dataset") and getattr(base, k) != v
        }


# ---- the key table, derived from the declarations above ---------------------------------------------------
CHOICES: dict[str, tuple[str, ...]] = {
    f.name: f.metadata["choices"] for f in fields(RunConfig) if f.metadata.get("choices")
}
# Numeric ranges (core/registry.py Bound); None = unbounded on that side.
RANGES: dict[str, Bound] = {f.name: f.metadata["bound"] for f in fields(RunConfig) if f.metadata.get("bound")}


@dataclass(frozen=True)
class KeySpec:
    """One config key as the CLI's `config-keys`, validation messages and the dashboard's form see it."""

    name: str
    type: str  # "int", "float", "str", "bool", with " or none" when it may be empty
    default: Any
    choices: tuple[str, ...] | None
    low: float | None
    high: float | None
    low_open: bool  # the low end itself is refused, e.g. inv_eps > 0
    help: str

    @property
    def optional(self) -> bool:
        return self.type.endswith(" or none")

    def valid_values(self) -> str:
        """'a|b|c', '[0.0, 1.0]', '(0.0, 1.0]' or '' (any value of the type)."""
        if self.choices:
            return "|".join(self.choices)
        if self.low is not None or self.high is not None:
            return str(Bound(self.low, self.high, self.low_open))
        return ""


def field_names() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def key_specs() -> list[KeySpec]:
    """Every settable key (all RunConfig fields but ``overrides``), in declaration order."""
    hints = _type_hints()
    specs = []
    for f in fields(RunConfig):
        if f.name == "overrides":
            continue
        bound = f.metadata.get("bound")
        specs.append(KeySpec(f.name, _type_name(hints[f.name]), f.default, f.metadata.get("choices"),
                             bound.low if bound else None, bound.high if bound else None,
                             bound.low_open if bound else False, f.metadata["help"]))
    return specs


def preset_defaults(preset: str, variant: str = "ml_sa") -> dict[str, Any]:
    """The value of every key under ``preset`` (and ``variant``, which sets the loss weights), before --set."""
    values = RunConfig.resolve(variant, preset).to_dict()
    values.pop("overrides")
    return values


def describe_keys() -> str:
    """One line per key: type, choices or range. Used in error messages and `amltui run --help`."""
    lines = []
    for spec in key_specs():
        valid = spec.valid_values()
        lines.append(f"{spec.name} ({spec.type})" + (f": {valid}" if valid else ""))
    return "\n".join(lines)


def key_reference(variant: str = "ml_sa") -> str:
    """Every key with its type, valid values, description and default under each preset (`amltui config-keys`)."""
    defaults = {preset: preset_defaults(preset, variant) for preset in PRESETS}
    blocks = [f"Defaults per preset for variant {variant} (the variant sets w_clean, w_adv, lambda_sa, lambda_ia, "
              "lambda_norm); override any key with --set key=value."]
    for spec in key_specs():
        valid = spec.valid_values()
        per_preset = "  ".join(f"{p}={format_value(defaults[p][spec.name])}" for p in PRESETS)
        blocks.append(f"{spec.name} ({spec.type}){': ' + valid if valid else ''}\n    {spec.help}\n"
                      f"    default: {per_preset}")
    return "\n".join(blocks)


def format_value(value: Any) -> str:
    """A key's value as `--set` would take it: none, true/false, or the plain number or string."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


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
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key}={value!r} is not a valid {_type_name(hint)}") from None
    if key in CHOICES and converted not in CHOICES[key]:
        raise ConfigError(f"{key}={converted!r} is not one of: {', '.join(CHOICES[key])}")
    if key == "device" and not _DEVICE.fullmatch(converted.strip().lower()):
        # Checked here, not when the run starts: a bad device must not leave a queued run behind.
        raise ConfigError(f"device={converted!r} is not a device: use auto, cpu, cuda or cuda:N")
    if key in RANGES and not RANGES[key].contains(converted):
        raise ConfigError(f"{key}={converted} is out of range: expected a value in {RANGES[key]}")
    return converted


_ASCII_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


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
    if isinstance(value, str) and not _ASCII_NUMBER.fullmatch(value.strip()) and base in (int, float):
        raise ValueError(value)  # int("٣") is 3 and float("1_000") is 1000.0: only ASCII digits are numbers here
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
        close = difflib.get_close_matches(key, field_names(), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ConfigError(f"unknown config key {key!r}; {hint}`amltui config-keys` lists every key with its type, "
                          "valid values and default")


def _check_choice(key: str, value: str) -> None:
    if value not in CHOICES[key]:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(CHOICES[key])}")
