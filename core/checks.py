"""Sanity checks of a robustness evaluation (Carlini et al. 2019, "On Evaluating Adversarial Robustness").

Pure functions over measured accuracies (percentages on the same n test images): no torch, no files. Each
failed check names a flag for the run record (``check_*``) and carries the numbers that tripped it.

(a) ``check_large_eps``: at a large budget (ε = 0.5 in pixel units every image can be moved to flat gray) a
    working attack drives accuracy to about 0; more than ``large_eps_max`` % left means the attack is blocked.
(b) more attack effort, both ways (PGD with 10× the steps, or with 5 fresh random restarts, against the plain PGD):
    ``check_not_converged`` fails when more effort LOWERS accuracy by more than the slack: the plain PGD had not
    converged, so its number overstates robustness (Carlini et al.'s concern: report the stronger attack);
    ``check_more_iterations`` fails when more effort RAISES it: more effort can only help the attacker, so the
    attack is broken (a bug, or a gradient that misleads the longer run).
(c) ``check_black_box``: the black-box Square attack is not stronger than the white-box ones (lower accuracy):
    if it is, the gradients the white-box attacks follow are useless.
(d) ``check_fgsm_gt_pgd``: FGSM accuracy is not above PGD's (same ε, same images) by more than ``fgsm_gap``
    points (a one-step attack far weaker than the iterative one is the signature of masked gradients, e.g. FGSM
    catastrophic overfitting). Its default, ``FGSM_PGD_GAP``, is also the gradient-masking flag's ``mask_gap``
    (core/config.py, core/flags.py): one threshold for one symptom.
(e) ``check_non_monotone``: accuracy does not rise with ε along any attack's curve (larger balls contain the
    smaller ones).

Comparisons of two accuracies ((b) both ways, (c), (e)) allow ``tolerance`` points, at least 2 images of n
(random starts differ).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CHECK_FLAGS = ("check_large_eps", "check_not_converged", "check_more_iterations", "check_black_box",
               "check_fgsm_gt_pgd", "check_non_monotone")
LARGE_EPS = 0.5
# Points by which FGSM accuracy may exceed PGD accuracy at the same ε before a model counts as gradient-masked:
# check (d)'s threshold and the default of the run flag's ``mask_gap``. At their training ε, sound models show gaps
# of 1.6-21.2 points and masked ones 35.9-75.4 (docs/results.md, "Choosing the quick preset").
FGSM_PGD_GAP = 30.0


@dataclass(frozen=True)
class Thresholds:
    large_eps_max: float = 10.0  # (a) % accuracy allowed at ε = 0.5
    fgsm_gap: float = FGSM_PGD_GAP  # (d) points FGSM may exceed PGD by
    tolerance: float = 1.0  # (b), (c), (e) points of slack
    min_images: int = 2  # ... but never less than this many images of n


@dataclass
class Measurements:
    """Accuracies (%) on one set of n images; None = not measured (that check is skipped)."""

    n: int
    eps_s: float
    fgsm: float | None = None  # at ε_s
    pgd: float | None = None  # PGD-k, 1 start, at ε_s
    pgd_more_steps: float | None = None  # PGD-10k at ε_s
    pgd_restarts: float | None = None  # PGD-k, 5 fresh starts, at ε_s
    square: float | None = None  # Square alone at ε_s
    large_eps: float | None = None  # PGD-k at LARGE_EPS
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # attack → [(ε, acc)]


@dataclass
class CheckResult:
    flag: str
    label: str
    passed: bool | None  # None = not measured
    numbers: dict[str, Any]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _r(x: float) -> float:
    return round(float(x), 2)


def run_checks(m: Measurements, th: Thresholds = Thresholds()) -> list[CheckResult]:
    """All six checks, in order (a), (b) both ways, (c)–(e); ``passed`` is None where inputs were not measured."""
    tol = max(th.tolerance, 100.0 * th.min_images / m.n) if m.n else th.tolerance
    return [_check_large_eps(m, th), _check_not_converged(m, tol), _check_more_iterations(m, tol),
            _check_black_box(m, tol), _check_fgsm_gt_pgd(m, th), _check_non_monotone(m, tol)]


def _check_large_eps(m: Measurements, th: Thresholds) -> CheckResult:
    """(a) at a large ε PGD must reach (near) zero accuracy."""
    if m.large_eps is None:
        return CheckResult("check_large_eps", "(a) large ε", None, {}, "not measured")
    ok = m.large_eps <= th.large_eps_max
    return CheckResult("check_large_eps", "(a) large ε", ok,
                       {"eps": LARGE_EPS, "pgd": _r(m.large_eps), "max": th.large_eps_max},
                       f"PGD accuracy at ε={LARGE_EPS} is {m.large_eps:.2f}% "
                       f"({'≤' if ok else '>'} {th.large_eps_max:g}%)")


def _more_effort(m: Measurements) -> dict[str, float]:
    """The stronger PGD runs that were measured: 10× the steps, 5 fresh restarts."""
    return {k: v for k, v in (("pgd_10x_steps", m.pgd_more_steps), ("pgd_5_restarts", m.pgd_restarts))
            if v is not None}


def _check_not_converged(m: Measurements, tol: float) -> CheckResult:
    """(b, lower) more PGD steps or restarts must not lower the accuracy by more than ``tol`` points."""
    return _check_effort(m, tol, "check_not_converged", "(b) PGD converged", lowers=True)


def _check_more_iterations(m: Measurements, tol: float) -> CheckResult:
    """(b, raise) more PGD steps or restarts must not raise the accuracy (an attack bug)."""
    return _check_effort(m, tol, "check_more_iterations", "(b) more effort helps", lowers=False)


def _check_effort(m: Measurements, tol: float, name: str, label: str, *, lowers: bool) -> CheckResult:
    """Check (b) one way: the more-effort PGD that moved the accuracy most in that direction, against plain PGD."""
    more = _more_effort(m)
    if m.pgd is None or not more:
        return CheckResult(name, label, None, {}, "not measured")
    key = (min if lowers else max)(more, key=lambda k: more[k])
    ok = more[key] >= m.pgd - tol if lowers else more[key] <= m.pgd + tol
    why = ("lowered accuracy by more than {tol:.2f} points, the plain PGD had not converged (its accuracy "
           "overstates robustness)" if lowers else "raised accuracy by more than {tol:.2f} points (an attack bug)")
    return CheckResult(name, label, ok, {"pgd": _r(m.pgd), **{k: _r(v) for k, v in more.items()}, "tolerance": _r(tol)},
                       f"{key} {more[key]:.2f}% vs PGD {m.pgd:.2f}%" + ("" if ok else ": more effort "
                                                                         + why.format(tol=tol)))


def _check_black_box(m: Measurements, tol: float) -> CheckResult:
    """(c) the black-box Square attack must not beat the best white-box attack."""
    white = {k: v for k, v in (("pgd", m.pgd), ("fgsm", m.fgsm)) if v is not None}
    if m.square is None or not white:
        return CheckResult("check_black_box", "(c) black-box ≤ white-box", None, {}, "not measured")
    best_key = min(white, key=lambda k: white[k])
    ok = m.square >= white[best_key] - tol
    return CheckResult("check_black_box", "(c) black-box ≤ white-box", ok,
                       {"square": _r(m.square), **{k: _r(v) for k, v in white.items()}, "tolerance": _r(tol)},
                       f"Square {m.square:.2f}% vs best white-box ({best_key}) {white[best_key]:.2f}%"
                       + ("" if ok else ": the black-box attack is stronger"))


def _check_fgsm_gt_pgd(m: Measurements, th: Thresholds) -> CheckResult:
    """(d) FGSM accuracy must not exceed PGD accuracy by more than the allowed gap."""
    if m.fgsm is None or m.pgd is None:
        return CheckResult("check_fgsm_gt_pgd", "(d) FGSM ≈ PGD", None, {}, "not measured")
    gap = m.fgsm - m.pgd
    ok = gap <= th.fgsm_gap
    return CheckResult("check_fgsm_gt_pgd", "(d) FGSM ≈ PGD", ok,
                       {"fgsm": _r(m.fgsm), "pgd": _r(m.pgd), "gap": _r(gap), "max_gap": th.fgsm_gap},
                       f"FGSM {m.fgsm:.2f}% − PGD {m.pgd:.2f}% = {gap:.2f} points "
                       f"({'≤' if ok else '>'} {th.fgsm_gap:g})")


def _check_non_monotone(m: Measurements, tol: float) -> CheckResult:
    """(e) accuracy must never rise (beyond the tolerance) as ε grows, on any curve."""
    if not m.curves:
        return CheckResult("check_non_monotone", "(e) monotone in ε", None, {}, "not measured")
    rises = []
    for attack, points in sorted(m.curves.items()):
        pts = sorted(points)
        for (e0, a0), (e1, a1) in zip(pts, pts[1:], strict=False):
            if a1 > a0 + tol:
                rises.append({"attack": attack, "from_eps": e0, "to_eps": e1, "from": _r(a0), "to": _r(a1)})
    ok = not rises
    worst = max(rises, key=lambda r: r["to"] - r["from"]) if rises else None
    return CheckResult("check_non_monotone", "(e) monotone in ε", ok,
                       {"rises": rises, "tolerance": _r(tol), "attacks": sorted(m.curves)},
                       "accuracy never rises with ε" if ok else
                       f"{worst['attack']}: {worst['from']:.2f}% at ε={worst['from_eps']:g} → "
                       f"{worst['to']:.2f}% at ε={worst['to_eps']:g}")


def failed_flags(results: list[CheckResult]) -> list[str]:
    return [r.flag for r in results if r.passed is False]


def merge_flags(existing: list[str] | None, results: list[CheckResult]) -> list[str]:
    """The record's flags with this evaluation's failures added and its passed checks' flags removed.

    Flags set by anything else (e.g. a training-time gradient-masking rule) are always kept, in order.
    """
    passed = {r.flag for r in results if r.passed is True}
    out = [f for f in (existing or []) if f not in passed]
    out += [f for f in failed_flags(results) if f not in out]
    return out


def summary_line(results: list[CheckResult]) -> str:
    """One line: 'checks: 3/5 passed; FAILED check_fgsm_gt_pgd (FGSM 51.70% − PGD 0.20% = …)'."""
    measured = [r for r in results if r.passed is not None]
    failed = [r for r in measured if not r.passed]
    text = f"checks: {len(measured) - len(failed)}/{len(measured)} passed"
    skipped = len(results) - len(measured)
    if skipped:
        text += f" ({skipped} not measured)"
    if failed:
        text += "; FAILED " + "; ".join(f"{r.flag} ({r.message})" for r in failed)
    return text
