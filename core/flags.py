"""Flags: warnings attached to a finished run when its numbers cannot be taken at face value.

A check is a function ``check(config, metrics, history) -> list[Flag]`` (metrics: the final test metrics in %,
history: the per-epoch records with the monitor accuracies). Register more with ``@register``; ``check_run``
runs them all and the run record stores ``flags`` (the names) and ``flag_details`` (rule + numbers).

``gradient_masking`` (config ``mask_rule``, thresholds ``mask_gap`` and ``mask_collapse``, in points):
- gap: final FGSM accuracy − PGD accuracy, both at the training budget ε_s, exceeds ``mask_gap``: FGSM accuracy
  is an artifact of a masked gradient that an iterative attack walks around (plain FGSM training at large ε does
  this, Wong et al. 2020). ``mask_gap`` defaults to core/checks.py's FGSM_PGD_GAP, the threshold of sanity check
  (d), which makes the same comparison.
- collapse: between two consecutive epochs the monitor's PGD accuracy at ε_s falls by ≥ ``mask_collapse`` while
  its FGSM accuracy at ε_s falls by less than half that ("catastrophic overfitting", Wong et al. 2020).
``gap_or_collapse`` (the default) trips on either; ``off`` disables the flag.

Like with like: FGSM and PGD are compared at one ε, the training ε_s. A_SA is FGSM at ε_s; when ``pgd_eps``
differs, A_PGD is at another ε, so the evaluation and the monitor also measure PGD at ε_s on A_PGD's own images
(``A_PGD_at_eps_s``, ``monitor_A_PGD_at_eps_s``) and the rule uses those. Why ε_s rather than FGSM at
``pgd_eps``: masking is a property of how the model was trained, and the FGSM − PGD gap of a sound model depends on
the ε it is read at. A robust quick model (FGSM-RS, ε_s 0.1) has gaps of 2.7 / 17.2 / 37.5 / 12.8 points at
ε 0.1 / 0.15 / 0.2 / 0.3 (docs/robustness.md): one threshold can only be calibrated at one ε, the training one.
A run recorded before this measurement existed, with ``pgd_eps`` ≠ ε_s, has no like-with-like pair: the rule is
not applied to it rather than applied to unlike numbers.

``at_chance``: the final A_orig is within ``CHANCE_MARGIN`` points of chance (100/classes): the model learned
nothing (e.g. the smallest `reproduce`), and tables, `ls` and the end of the run say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from core.config import RunConfig

GRADIENT_MASKING = "gradient_masking"
PGD_AT_EPS_S = "A_PGD_at_eps_s"  # the metric core/evaluate.py records when pgd_eps ≠ ε_s (no torch here)
MONITOR_PGD_AT_EPS_S = "monitor_" + PGD_AT_EPS_S
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


def pgd_key(config: RunConfig, prefix: str = "") -> tuple[str, str]:
    """(metric key, label) of the PGD accuracy at ε_s: A_PGD itself, or the extra PGD when ``pgd_eps`` ≠ ε_s."""
    if config.effective_pgd_eps == config.eps_s:
        return prefix + "A_PGD", "A_PGD"
    return prefix + PGD_AT_EPS_S, f"PGD@{config.eps_s:g}"


def masking_rule_text(config: RunConfig) -> str:
    eps = f"at ε_s {config.eps_s:g}"
    gap = f"final A_SA − {pgd_key(config)[1]} > {config.mask_gap:g} points (both {eps})"
    collapse = (f"monitor PGD accuracy drops ≥ {config.mask_collapse:g} points in one epoch while monitor FGSM "
                f"accuracy drops < {config.mask_collapse / 2:g} (both {eps})")
    return {"gap": gap, "collapse": collapse, "gap_or_collapse": f"{gap}, or {collapse}", "off": "off"}[
        config.mask_rule]


@register
def gradient_masking(config: RunConfig, metrics: dict[str, float], history: list[dict[str, Any]]) -> list[Flag]:
    """FGSM ≫ PGD (same ε) at the end, or a one-epoch collapse of the monitor's PGD accuracy with FGSM holding."""
    if config.mask_rule == "off":
        return []
    reasons: list[str] = []
    numbers: dict[str, float] = {}
    if config.mask_rule in ("gap", "gap_or_collapse"):
        _gap_rule(config, metrics, reasons, numbers)
    if config.mask_rule in ("collapse", "gap_or_collapse"):
        _collapse_rule(config, history, reasons, numbers)
    if not reasons:
        return []
    return [Flag(GRADIENT_MASKING, masking_rule_text(config), reasons, numbers)]


def _gap_rule(config: RunConfig, metrics: dict[str, float], reasons: list[str], numbers: dict[str, float]) -> None:
    key, label = pgd_key(config)
    if "A_SA" not in metrics or key not in metrics:
        return
    gap = metrics["A_SA"] - metrics[key]
    if gap > config.mask_gap:
        reasons.append(f"A_SA {metrics['A_SA']:.2f} − {label} {metrics[key]:.2f} = {gap:.2f} > {config.mask_gap:g}")
        numbers.update({"A_SA": metrics["A_SA"], key: metrics[key], "gap": round(gap, 4),
                        "mask_gap": config.mask_gap, "eps_s": config.eps_s})


def _collapse_rule(config: RunConfig, history: list[dict[str, Any]], reasons: list[str],
                   numbers: dict[str, float]) -> None:
    pgd, _ = pgd_key(config, "monitor_")
    fgsm = "monitor_A_SA"
    for prev, cur in zip(history, history[1:], strict=False):
        if not all(k in prev and k in cur for k in (pgd, fgsm)):
            continue
        pgd_drop = prev[pgd] - cur[pgd]
        fgsm_drop = prev[fgsm] - cur[fgsm]
        if pgd_drop >= config.mask_collapse and fgsm_drop < config.mask_collapse / 2:
            reasons.append(f"epoch {prev['epoch']}→{cur['epoch']}: monitor PGD {prev[pgd]:.1f}→{cur[pgd]:.1f} "
                           f"while FGSM {prev[fgsm]:.1f}→{cur[fgsm]:.1f}")
            numbers.update(collapse_epoch=float(cur["epoch"]), monitor_pgd_drop=round(pgd_drop, 4),
                           monitor_fgsm_drop=round(fgsm_drop, 4), mask_collapse=config.mask_collapse)
            return
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
