"""Robustness evaluation beyond one PGD number: AutoAttack, accuracy-vs-ε curves, restarts, Square.

AutoAttack (Croce & Hein 2020) and Square come from torchattacks (a dependency, not re-implemented here). Every
function takes [0, 1] images and a model whose normalization, if any, lives inside it, which is what torchattacks
assumes (its attacks clamp to [0, 1] and move inputs to the device of the model's parameters). torchattacks puts
the model in eval mode during an attack and calls ``train()`` afterwards if it was training; we run every attack
inside :func:`core.attacks.base.eval_mode`, which restores each submodule's own mode instead. Its APGD reseeds
torch's global RNG, so attacks run inside ``torch.random.fork_rng``: an evaluation never changes the caller's
random stream.

AutoAttack's versions are declared in core/aa_spec.py: the full-strength ones (the default ``standard``: APGD-CE,
APGD-T and FAB-T at 100 iterations, 9 target classes, Square at 5000 queries) are built here from torchattacks'
components with every count set; the ``-fast`` ones are torchattacks' own 10-iteration ``AutoAttack``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.aa_spec import FAST_SUFFIX, FAST_VERSIONS, Component, aa_components_of
from core.attacks import FGSM, PGD
from core.attacks.base import eval_mode
from core.data import to_float
from core.evaluate import progress_chunk

Progress = Callable[[str, int, int], None]  # (what, images done, total)

#: Slack for the L∞ budget check of adversarial examples (float32 rounding of x ± ε).
LINF_SLACK = 1e-5


def _component(comp: Component, model: nn.Module, eps: float, seed: int, n_classes: int) -> Any:
    """One torchattacks attack with every count of ``comp`` set explicitly (never a library default)."""
    import torchattacks as ta

    common = dict(norm="Linf", eps=eps, seed=seed, n_restarts=comp.restarts)
    if comp.attack in ("apgd-ce", "apgd-dlr"):
        return ta.APGD(model, loss=comp.attack.split("-")[1], steps=comp.steps, eot_iter=comp.eot, **common)
    if comp.attack == "apgd-t":
        atk = ta.APGDT(model, n_classes=n_classes, steps=comp.steps, eot_iter=comp.eot, **common)
    elif comp.attack in ("fab", "fab-t"):
        atk = ta.FAB(model, multi_targeted=comp.attack == "fab-t", n_classes=n_classes, steps=comp.steps, **common)
    elif comp.attack == "square":
        return ta.Square(model, n_queries=comp.steps, **common)
    else:
        raise ValueError(f"unknown AutoAttack component {comp.attack!r}")
    if comp.targets:  # torchattacks derives n_classes − 1; the reference sets 9 explicitly
        atk.n_target_classes = min(comp.targets, n_classes - 1)
    return atk


def _built_counts(attack: Any) -> tuple[int, int, int]:
    """(iterations or queries, restarts, target classes) of a built torchattacks attack."""
    steps = getattr(attack, "n_queries", None) or attack.steps
    targets = getattr(attack, "n_target_classes", 0) if getattr(attack, "multi_targeted", True) else 0
    return int(steps), int(attack.n_restarts), int(targets)


def aa_components(model: nn.Module, eps: float, version: str, *, seed: int = 0,
                  n_classes: int = 10) -> list[tuple[str, Any]]:
    """(name, torchattacks attack) in run order, built as core/aa_spec.py declares them. A ``-fast`` version is
    torchattacks' own ``AutoAttack`` (its 10-iteration ensemble), checked against that declaration."""
    import torchattacks as ta

    name, comps = aa_components_of(version)
    if name not in FAST_VERSIONS:
        return [(c.attack, _component(c, model, eps, seed, n_classes)) for c in comps]
    aa = ta.AutoAttack(model, norm="Linf", eps=eps, version=name.removesuffix(FAST_SUFFIX), n_classes=n_classes,
                       seed=seed)
    built = list(aa._autoattack.attacks)  # torchattacks keeps the ensemble in a MultiAttack
    declared = [(c.steps, c.restarts, c.targets) for c in comps]
    if [_built_counts(a) for a in built] != declared:
        raise RuntimeError(f"torchattacks AutoAttack({name}) is not built as core/aa_spec.py declares {name} "
                           "(this amltui was written for torchattacks 3.5)")
    return [(c.attack, a) for c, a in zip(comps, built, strict=True)]


@contextmanager
def _quiet_rng(device: torch.device):
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


@dataclass
class AttackResult:
    """Robust accuracy of one attack on n images; ``broken`` = images each component turned (AutoAttack)."""

    correct: int
    n: int
    seconds: float = 0.0
    clean_wrong: int | None = None
    broken: dict[str, int] = field(default_factory=dict)
    max_linf: float = 0.0
    seconds_by: dict[str, float] = field(default_factory=dict)  # AutoAttack: seconds spent in each component

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.n if self.n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "n": self.n, "percent": round(self.percent, 4),
                "seconds": round(self.seconds, 3), "clean_wrong": self.clean_wrong, "broken": dict(self.broken),
                "max_linf": round(self.max_linf, 6),
                "seconds_by": {k: round(v, 3) for k, v in self.seconds_by.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttackResult:
        return cls(int(data["correct"]), int(data["n"]), float(data.get("seconds", 0.0)), data.get("clean_wrong"),
                   {k: int(v) for k, v in (data.get("broken") or {}).items()}, float(data.get("max_linf", 0.0)),
                   {k: float(v) for k, v in (data.get("seconds_by") or {}).items()})


def _batches(n: int, size: int):
    """Chunks of at most ``size`` images, small enough that progress moves ~10 times (core/evaluate.py)."""
    size = progress_chunk(n, size)
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _batches_on(images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device, label: str,
                progress: Progress | None) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """(slice, images as floats on ``device``, labels) per batch; says "0 done" first so a bar appears at once."""
    if progress:
        progress(label, 0, len(labels))
    for sl in _batches(len(labels), batch_size):
        x = images[sl].to(device)
        yield sl, to_float(x) if x.dtype == torch.uint8 else x, labels[sl].to(device)


def _check_budget(x: torch.Tensor, x_adv: torch.Tensor, eps: float, what: str) -> float:
    """Largest L∞ distance of the batch; an attack leaving the ε-ball or [0, 1] is a bug, not a result."""
    dist = float((x_adv - x).abs().amax()) if x.numel() else 0.0
    if dist > eps + LINF_SLACK or (x_adv.numel() and (float(x_adv.min()) < 0 or float(x_adv.max()) > 1)):
        raise RuntimeError(f"{what} returned images outside the L∞ ball of ε={eps} or [0, 1] (max |δ| {dist:.6f})")
    return dist


def autoattack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *, version: str = "standard",
               seed: int = 0, batch_size: int = 500, progress: Progress | None = None) -> AttackResult:
    """AutoAttack accuracy: an image counts as robust if clean-correct and no component fools the model.

    Components run in order on the images still robust (the reference protocol), so ``broken[name]`` says how
    many images each attack was the first to break. Progress is reported after each component of each chunk, in
    images: a chunk's images count as done in equal parts per component.
    """
    device = next(model.parameters()).device
    name, _ = aa_components_of(version)
    label = f"AA-{name} ε={eps:g}"
    started = time.monotonic()
    result = AttackResult(0, len(labels), clean_wrong=0)
    with eval_mode(model), _quiet_rng(device):
        components = aa_components(model, eps, name, seed=seed) if eps > 0 else []
        result.broken = {a: 0 for a, _ in components}
        result.seconds_by = {a: 0.0 for a, _ in components}
        for sl, x, y in _batches_on(images, labels, batch_size, device, label, progress):
            with torch.no_grad():
                robust = model(x).argmax(1) == y
            result.clean_wrong += int((~robust).sum())
            for i, (attack_name, attack) in enumerate(components):
                idx = robust.nonzero().flatten()
                if idx.numel():
                    t0 = time.monotonic()
                    x_adv = attack(x[idx], y[idx]).detach()
                    result.seconds_by[attack_name] += time.monotonic() - t0
                    result.max_linf = max(result.max_linf, _check_budget(x[idx], x_adv, eps, attack_name))
                    with torch.no_grad():
                        fooled = model(x_adv).argmax(1) != y[idx]
                    result.broken[attack_name] += int(fooled.sum())
                    robust[idx[fooled]] = False
                if progress and i + 1 < len(components):
                    progress(label, sl.start + (sl.stop - sl.start) * (i + 1) // len(components), len(labels))
            result.correct += int(robust.sum())
            if progress:
                progress(label, sl.stop, len(labels))
    result.seconds = time.monotonic() - started
    return result


def square(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *, n_queries: int = 5000,
           seed: int = 0, batch_size: int = 500, progress: Progress | None = None) -> AttackResult:
    """Accuracy under the black-box Square attack alone (torchattacks; score-based, no gradients)."""
    import torchattacks as ta

    device = next(model.parameters()).device

    def make() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return ta.Square(model, norm="Linf", eps=eps, n_queries=n_queries, n_restarts=1, seed=seed)

    return _score(model, images, labels, eps, make, f"Square-{n_queries} ε={eps:g}", device, batch_size, progress)


def pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *, steps: int = 40,
        restarts: int = 1, alpha: float | None = None, seed: int = 0, batch_size: int = 500,
        progress: Progress | None = None) -> AttackResult:
    """PGD-k accuracy with ``restarts`` random starts (an image is robust only if it survives every start).

    α defaults to 2.5·ε/steps (Madry et al.'s rule), so a PGD of any ε and length can reach the ball's edge.
    """
    device = next(model.parameters()).device
    step = alpha if alpha is not None else min(1.0, 2.5 * eps / steps)
    gen = torch.Generator().manual_seed(int(seed))
    attacks = [PGD(model, eps=eps, alpha=step, steps=steps, generator=gen) for _ in range(restarts)]

    def make() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        def attack(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            worst = x.clone()
            alive = torch.ones(len(y), dtype=torch.bool, device=x.device)
            for atk in attacks:
                idx = alive.nonzero().flatten()
                if idx.numel() == 0:
                    break
                x_adv = atk(x[idx], y[idx])
                with torch.no_grad():
                    fooled = model(x_adv).argmax(1) != y[idx]
                worst[idx] = x_adv  # the last attempt stands for images that survive every start
                alive[idx[fooled]] = False
            return worst
        return attack

    label = f"PGD-{steps}" + (f"×{restarts}" if restarts > 1 else "") + f" ε={eps:g}"
    return _score(model, images, labels, eps, make, label, device, batch_size, progress)


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *, batch_size: int = 500,
         progress: Progress | None = None) -> AttackResult:
    device = next(model.parameters()).device
    return _score(model, images, labels, eps, lambda: FGSM(model, eps), f"FGSM ε={eps:g}", device, batch_size,
                  progress)


def _score(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
           make: Callable[[], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]], label: str,
           device: torch.device, batch_size: int, progress: Progress | None) -> AttackResult:
    started = time.monotonic()
    result = AttackResult(0, len(labels))
    with eval_mode(model), _quiet_rng(device):
        attack = make() if eps > 0 else None
        for sl, x, y in _batches_on(images, labels, batch_size, device, label, progress):
            if attack is not None:
                x_adv = attack(x, y).detach()
                result.max_linf = max(result.max_linf, _check_budget(x, x_adv, eps, label))
            else:
                x_adv = x
            with torch.no_grad():
                result.correct += int((model(x_adv).argmax(1) == y).sum())
            if progress:
                progress(label, sl.stop, len(labels))
    result.seconds = time.monotonic() - started
    return result


def default_grid(eps_s: float, points: int = 9) -> list[float]:
    """0 … 2·ε_s (capped at 1) in ``points`` equal steps, rounded to 4 decimals."""
    top = min(1.0, 2 * eps_s)
    return [round(top * i / (points - 1), 4) for i in range(points)]
