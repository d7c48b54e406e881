"""One home for every named choice of the science (torch-free, so the config and the CLI import it cheaply).

The torch modules map these names to their implementations and refuse, at import, a mapping that disagrees
(``must_match``); core/config.py derives its CHOICES and RANGES from here. To add an architecture, a miner, a
dataset or a training attack: add its name here, then its implementation where the comment says.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# (w_clean, w_adv, lambda_sa, lambda_ia, lambda_norm): the objective of each variant (docs/architecture.md).
VARIANT_WEIGHTS: dict[str, dict[str, float]] = {
    "baseline": dict(w_clean=0.5, w_adv=0.5, lambda_sa=0.0, lambda_ia=0.0, lambda_norm=0.0),
    "ml_sa": dict(w_clean=0.5, w_adv=0.5, lambda_sa=0.5, lambda_ia=0.0, lambda_norm=1e-3),
    "ml_sa_ia": dict(w_clean=0.5, w_adv=0.5, lambda_sa=0.5, lambda_ia=0.5, lambda_norm=1e-3),
}
VARIANTS = tuple(VARIANT_WEIGHTS)
PRESETS = ("paper", "quick", "authors")  # their values: core/config.py PRESET_VALUES

ARCHITECTURES = ("paper", "small")  # implementations: core/models.py ARCHITECTURES
DATASETS = ("mnist", "fashion-mnist", "mnist-sample", "synthetic")  # loaders: core/data.py
SYNTHETIC_SIZES = (2000, 500)  # (train, test) images of the generated "synthetic" data (preflight checks subsets)
TRAIN_ATTACKS = ("fgsm", "fgsm_rs", "pgd")  # core/attacks/training.py make_train_attack
INVARIANCE_MODES = ("exact", "fast")  # core/attacks/invariance_search.py
NEGATIVES = ("natural", "perturbed")  # core/losses.py TripletLoss
DISTANCES = ("abs_cos", "cos")  # core/losses.py make_distance: 1 − |cos| (paper Eq. 1) or 1 − cos
OPTIMIZERS = ("adam", "sgd")  # core/train.py make_optimizer
SELECTIONS = ("last", "best_pgd")  # core/train.py
MASK_RULES = ("gap_or_collapse", "gap", "collapse", "off")  # core/flags.py

# Triplet miners, name → "module:class" (imported on use: the classes are torch code, this module is not).
# Each class is built as cls(distance) and follows core/losses.py's Miner protocol.
MINERS: dict[str, str] = {
    "hardest": "core.losses:HardestNegativeMiner",
    "random": "core.losses:RandomNegativeMiner",
    "batch_hard": "core.losses:BatchHardMiner",
}


def miner_class(name: str) -> Any:
    """The miner class registered under ``name`` (ValueError naming the choices otherwise)."""
    if name not in MINERS:
        raise ValueError(f"unknown triplet miner {name!r}; choose one of: {', '.join(MINERS)}")
    module, _, attr = MINERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_miner(name: str, distance: Any = None) -> Any:
    """A fresh miner object for ``TripletLoss(miner=...)`` by its registered name (core/losses.py Miner)."""
    return miner_class(name)(distance=distance)


@dataclass(frozen=True)
class Bound:
    """A numeric range; ``low_open``: the low end itself is refused (e.g. an invariance budget of 0)."""

    low: float | None
    high: float | None
    low_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        return f"{'(' if self.low_open else '['}{low}, {high}]"


# ε budgets are L∞ in pixel units of [0, 1] images. An attack of ε = 0 is a no-op (allowed: a clean control);
# an invariance example needs a budget > 0 (core/attacks/invariance.py linf_combine).
ATTACK_EPS = Bound(0.0, 1.0)
INVARIANCE_EPS = Bound(0.0, 1.0, low_open=True)


def must_match(what: str, names: Iterable[str], registered: Iterable[str]) -> None:
    """Refuse an implementation table whose names differ from the registry's (called at import)."""
    names, registered = tuple(names), tuple(registered)
    if set(names) != set(registered):
        raise RuntimeError(f"{what}: implemented {sorted(names)} but core/registry.py registers {sorted(registered)}")
