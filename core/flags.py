"""Flags: warnings attached to a finished run when its numbers cannot be taken at face value.

A check is a function ``check(config, metrics, history) -> list[Flag]`` (metrics: the final test metrics in %,
history: the per-epoch records with the monitor accuracies). Register more with ``@register``; ``check_run``
runs them all and the run record stores ``flags`` (the names) and ``flag_details`` (rule + numbers).

``gradient_masking`` (config ``mask_rule``, thresholds ``mask_gap`` and ``mask_collapse``, in points):
- gap: the final A_SA − A_PGD exceeds ``mask_gap``: FGSM accuracy is an artifact of a masked gradient that an
  iterative attack walks around (plain FGSM training at large ε does this, Wong et al. 2020).
- collapse: between two consecutive epochs the monitor's PGD accuracy falls by ≥ ``mask_collapse`` while its
  FGSM accuracy falls by less than half that ("catastrophic overfitting", Wong et al. 2020).
``gap_or_collapse`` (the default) trips on either; ``off`` disables the flag.

``at_chance``: the final A_orig is within ``CHANCE_MARGIN`` points of chance (100/classes): the model learned
nothing (e.g. the smallest `reproduce`), and tables, `ls` and the end of the run say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from core.config import RunConfig

GRADIENT_MASKING = "gradient_masking"
AT_CHANCE = "at_chance"
CHANCE_MARGIN = 5.0  # points above 100/classes still read as chance (3σ of chance accuracy on 300 images is 5.2)


@dataclass(frozen=True)
class Flag:
    name: str
    rule: str  # the rule as configured, thresholds included
    reasons: list[str] = field(default_factory=list)  # what tripped it, with the numbers
    numbers: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Check = Callable[[RunConfig, dict[str, float], list[dict[str, Any]]], list[Flag]]
CHECKS: list[Check] = []


def register(check: Check) -> Check:
    """Add a check run by ``check_run`` (a decorator)."""
    if check not in CHECKS:
        CHECKS.append(check)
    return check


def check_run(config: RunConfig, metrics: dict[str, float], history: list[dict[str, Any]]) -> list[Flag]:
    """Every registered check's flags for one run."""
    return [flag for check in CHECKS for flag in check(config, metrics, history)]


def flags_record(flags: list[Flag]) -> dict[str, Any]:
    """The run-record fields: ``flags`` (names, sorted, unique) and ``flag_details`` (one dict per flag)."""
    return {"flags": sorted({f.name for f in flags}), "flag_details": [f.to_dict() for f in flags]}


def masking_rule_text(config: RunConfig) -> str:
    gap = f"final A_SA − A_PGD > {config.mask_gap:g} points"
    collapse = (f"monitor PGD accuracy drops ≥ {config.mask_collapse:g} points in one epoch while monitor FGSM "
                f"accuracy drops < {config.mask_collapse / 2:g}")
    return {"gap": gap, "collapse": collapse, "gap_or_collapse": f"{gap}, or {collapse}", "off": "off"}[
        config.mask_rule]


@register
def gradient_masking(config: RunConfig, metrics: dict[str, float], history: list[dict[str, Any]]) -> list[Flag]:
    """A_SA ≫ A_PGD at the end, or a one-epoch collapse of the monitor's PGD accuracy with FGSM holding."""
    if config.mask_rule == "off":
        return []
    reasons: list[str] = []
    numbers: dict[str, float] = {}
    if config.mask_rule in ("gap", "gap_or_collapse") and "A_SA" in metrics and "A_PGD" in metrics:
        gap = metrics["A_SA"] - metrics["A_PGD"]
        if gap > config.mask_gap:
            reasons.append(f"A_SA {metrics['A_SA']:.2f} − A_PGD {metrics['A_PGD']:.2f} = {gap:.2f} > "
                           f"{config.mask_gap:g}")
            numbers.update(A_SA=metrics["A_SA"], A_PGD=metrics["A_PGD"], gap=round(gap, 4),
                           mask_gap=config.mask_gap)
    if config.mask_rule in ("collapse", "gap_or_collapse"):
        for prev, cur in zip(history, history[1:], strict=False):
            keys = ("monitor_A_PGD", "monitor_A_SA")
            if not all(k in prev and k in cur for k in keys):
                continue
            pgd_drop = prev["monitor_A_PGD"] - cur["monitor_A_PGD"]
            fgsm_drop = prev["monitor_A_SA"] - cur["monitor_A_SA"]
            if pgd_drop >= config.mask_collapse and fgsm_drop < config.mask_collapse / 2:
                reasons.append(
                    f"epoch {prev['epoch']}→{cur['epoch']}: monitor PGD {prev['monitor_A_PGD']:.1f}→"
                    f"{cur['monitor_A_PGD']:.1f} while FGSM {prev['monitor_A_SA']:.1f}→{cur['monitor_A_SA']:.1f}")
                numbers.update(collapse_epoch=float(cur["epoch"]), monitor_pgd_drop=round(pgd_drop, 4),
                               monitor_fgsm_drop=round(fgsm_drop, 4), mask_collapse=config.mask_collapse)
                break
    if not reasons:
        return []
    return [Flag(GRADIENT_MASKING, masking_rule_text(config), reasons, numbers)]


@register
def at_chance(config: RunConfig, metrics: dict[str, float], history: list[dict[str, Any]]) -> list[Flag]:
    """Clean accuracy at chance level: the model learned nothing (too few epochs or images, or a broken run),
    so its robustness numbers say nothing either."""
    from core.data import NUM_CLASSES

    chance = 100.0 / NUM_CLASSES
    if "A_orig" not in metrics or metrics["A_orig"] > chance + CHANCE_MARGIN:
        return []
    rule = f"A_orig ≤ chance ({chance:g}% for {NUM_CLASSES} classes) + {CHANCE_MARGIN:g} points"
    reason = (f"A_orig {metrics['A_orig']:.2f}% is at chance: the model did not learn (train longer or on more "
              "images); its other accuracies say nothing about robustness")
    return [Flag(AT_CHANCE, rule, [reason], {"A_orig": metrics["A_orig"], "chance": chance})]
