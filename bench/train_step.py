"""Training throughput (images/s) of amltui's training step against a naive reference, per variant, on CPU.

amltui    core.step.TrainStep fed as core.train.train feeds it: the whole split as one uint8 tensor, batches by
          randperm slicing (core.data.batch_indices) and core.data.to_float per batch, the model in
          channels_last. With FGSM and a model whose train and eval modes agree, FGSM's clean forward doubles
          as the objective's ("reuse"), and for the baseline one backward gives FGSM's input gradient and the
          clean term's parameter gradients ("fused"); otherwise x_p first, then one joint forward.
naive     The obvious way, structured like the authors' trainer (eczy/sensitivity-invariance-tradeoff,
          pt-metric-invariance/): a DataLoader over a TensorDataset of float images (shuffle, no workers); FGSM
          by a full loss.backward() on an input that requires grad (parameter grads computed, then zeroed);
          separate forwards for the clean CE, the adversarial CE and each embedding the objective needs
          (model.embed on clean, adversarial, invariance images). Same objective (core.losses), backward, Adam.
before    (--before) amltui's step as it was before issue 15: FGSM with an input-only gradient, then one joint
          forward over [x, x_adv(, x_inv)]; no graph reuse, no channels_last.

attacks   (--attacks fgsm,fgsm_rs,pgd) the training attack making x_p: for each, amltui's step (core.attacks:
          input gradient only) against the naive step's attack (a full loss.backward() per attack step, on an
          input that requires grad), the random starts drawn from the same seeded generator.

Before timing, each variant checks on one batch, from identical weights, that the implementations compute the
same loss and the same parameter gradients (so the comparison is fair).

    .venv/bin/python bench/train_step.py                 # all variants, default sizes (about 3 min on 2 shared cores)
    .venv/bin/python bench/train_step.py --before --repeats 8 --batches 3   # the before/after table
    .venv/bin/python bench/train_step.py --attacks fgsm,fgsm_rs,pgd --train-steps 7 --variants baseline,ml_sa
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from core.attacks import TRAIN_ATTACKS
from core.config import VARIANTS, RunConfig
from core.data import Split, batch_indices, load_dataset, to_float
from core.losses import ObjectiveWeights, TripletLoss, objective
from core.models import EmbeddingNet, build_model
from core.registry import make_miner
from core.step import TrainStep, use_channels_last
from core.train import make_optimizer, weights_of

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


# ------------------------------------------------------------------------------------------------ data


def shifted(images: torch.Tensor) -> torch.Tensor:
    """Stand-in x_q: float images shifted right by one pixel (zero column enters), clipped to [0, 1]."""
    x = to_float(images)
    out = torch.zeros_like(x)
    out[..., 1:] = x[..., :-1]
    return out.clamp_(0.0, 1.0)


def amltui_batches(split: Split, x_inv_all: torch.Tensor | None, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless batches the way core.train.train makes them: randperm slices of the uint8 split."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        for idx in batch_indices(len(split), batch_size, gen):
            x_inv = x_inv_all[idx] if x_inv_all is not None else None
            yield to_float(split.images[idx]), split.labels[idx], x_inv


def naive_batches(split: Split, x_inv_all: torch.Tensor | None, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless batches from a shuffling DataLoader over float tensors (num_workers=0), epoch after epoch."""
    tensors = [to_float(split.images), split.labels] + ([x_inv_all] if x_inv_all is not None else [])
    loader = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))
    while True:
        for batch in loader:
            yield batch[0], batch[1], (batch[2] if len(batch) > 2 else None)


# ------------------------------------------------------------------------------------------------ steps


class NaiveStep:
    """The reference step: FGSM by a full backward, then one forward per CE term and per embedding."""

    def __init__(self, config: RunConfig, model: EmbeddingNet, optimizer: torch.optim.Optimizer,
                 miner_gen: torch.Generator | None = None, attack_gen: torch.Generator | None = None) -> None:
        self.model, self.optimizer, self.eps = model, optimizer, config.eps_s
        self.weights: ObjectiveWeights = weights_of(config)
        self.triplet = TripletLoss(margin=config.margin, miner=make_miner(config.miner), negatives=config.negatives)
        self.miner_gen = miner_gen
        self.attack, self.attack_gen = config.train_attack, attack_gen
        self.steps = config.train_steps if config.train_attack == "pgd" else 1
        default = {"fgsm": self.eps, "fgsm_rs": 1.25 * self.eps, "pgd": 2.5 * self.eps / self.steps}
        self.alpha = min(1.0, default[self.attack]) if config.train_alpha is None else config.train_alpha

    def adversarial(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training attack by full backward passes: the input requires grad, every parameter's .grad fills."""
        x_adv = x
        if self.attack != "fgsm":  # uniform start in the ε-ball
            noise = torch.rand(x.shape, generator=self.attack_gen, dtype=x.dtype)
            x_adv = (x + (2 * noise - 1) * self.eps).clamp(0.0, 1.0)
        for _ in range(self.steps):
            x_req = x_adv.clone().requires_grad_(True)
            self.model.zero_grad()
            F.cross_entropy(self.model(x_req), y).backward()
            x_adv = x_req + self.alpha * x_req.grad.sign()
            if self.attack != "fgsm":
                x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps)
            x_adv = x_adv.clamp(0.0, 1.0).detach()
        return x_adv

    def __call__(self, x: torch.Tensor, y: torch.Tensor, x_inv: torch.Tensor | None = None) -> dict[str, float]:
        w, model = self.weights, self.model
        x_adv = self.adversarial(x, y)
        self.optimizer.zero_grad()  # the attack's parameter grads must not leak into the update

        # One forward per term; embeddings only where the variant's objective uses them.
        logits_clean = model(x)
        logits_adv = model(x_adv)
        h_clean = model.embed(x) if (w.lambda_sa > 0 or w.lambda_ia > 0) else None
        h_adv = model.embed(x_adv) if w.lambda_sa > 0 else None
        h_inv = model.embed(x_inv) if (w.lambda_ia > 0 and x_inv is not None) else None
        loss, info = objective(logits_clean=logits_clean, logits_adv=logits_adv, labels=y, h_clean=h_clean,
                               h_adv=h_adv, h_inv=h_inv, weights=w, triplet=self.triplet, generator=self.miner_gen)
        loss.backward()
        self.optimizer.step()
        return info


class BeforeStep(TrainStep):
    """amltui's step before issue 15 (for the before/after column): always the plain path, no channels_last."""

    channels_last = False

    def __init__(self, config: RunConfig, model: EmbeddingNet, optimizer: torch.optim.Optimizer,
                 miner_gen: torch.Generator | None = None, attack_gen: torch.Generator | None = None) -> None:
        super().__init__(config, model, optimizer, miner_gen, attack_gen)
        self.path = "plain"


def wants_channels_last(step_cls: object) -> bool:
    """amltui's steps run on a channels_last model, as core.train.train makes it; the naive one does not."""
    return isinstance(step_cls, type) and issubclass(step_cls, TrainStep) and getattr(step_cls, "channels_last", True)


StepFactory = Callable[[RunConfig, EmbeddingNet, torch.optim.Optimizer, torch.Generator, torch.Generator],
                       Callable[..., dict]]


class Impl:
    """One implementation under test: its own model copy, optimizer and batch stream."""

    def __init__(self, name: str, step_cls: StepFactory, batches: Iterator[Batch], config: RunConfig,
                 init_state: dict[str, torch.Tensor]) -> None:
        self.name = name
        self.model = build_model(config.arch, embed_dim=config.embed_dim, normalize=config.normalize)
        self.model.load_state_dict(init_state)
        self.model.train()
        if wants_channels_last(step_cls) and config.channels_last:
            use_channels_last(self.model)  # as core.train.train does
        self.step = step_cls(config, self.model, make_optimizer(config, self.model),
                             torch.Generator().manual_seed(config.seed + 1),
                             torch.Generator().manual_seed(config.seed + 2))
        self.batches = batches
        self.rates: list[float] = []  # img/s of each timed block
        self.step_rates: list[float] = []  # img/s of each timed step (their max: the least disturbed step)

    def run(self, n: int, record: bool = True, clock: Callable[[], float] = time.perf_counter) -> None:
        """n steps, data preparation included; records the block's and each step's img/s."""
        images, seconds, rates = 0, 0.0, []
        for _ in range(n):
            start = clock()
            x, y, x_inv = next(self.batches)
            info = self.step(x, y, x_inv)
            took = clock() - start
            images, seconds = images + x.shape[0], seconds + took
            rates.append(x.shape[0] / took)
            if not math.isfinite(info["loss"]):
                raise RuntimeError(f"{self.name}: non-finite loss {info['loss']}")
        if record:
            self.rates.append(images / seconds)
            self.step_rates.extend(rates)


# ------------------------------------------------------------------------------------------------ checks


def check_same(config: RunConfig, init_state: dict[str, torch.Tensor], batch: Batch,
               steps: dict[str, StepFactory]) -> dict[str, tuple[float, float]]:
    """Loss and gradients of one step from identical weights: {name: (loss, max rel. grad diff vs amltui)}."""
    grads: dict[str, list[torch.Tensor]] = {}
    losses: dict[str, float] = {}
    for name, step_cls in steps.items():
        model = build_model(config.arch, embed_dim=config.embed_dim, normalize=config.normalize)
        model.load_state_dict(copy.deepcopy(init_state))
        if wants_channels_last(step_cls) and config.channels_last:
            use_channels_last(model)
        step = step_cls(config, model, make_optimizer(config, model), torch.Generator().manual_seed(1),
                        torch.Generator().manual_seed(2))
        losses[name] = step(*batch)["loss"]  # computed before the update
        grads[name] = [p.grad.detach().clone() for p in model.parameters()]  # .grad survives optimizer.step()
    ref = grads["amltui"]
    out = {}
    for name in steps:
        rel = max(float((g - r).abs().max() / r.abs().max().clamp_min(1e-12)) for g, r in zip(grads[name], ref,
                                                                                                strict=True))
        out[name] = (losses[name], rel)
    return out


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    p.add_argument("--batches", type=int, default=4, help="timed batches per block")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks per implementation (interleaved)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches per implementation and variant")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--before", action="store_true", help="also time amltui's step before issue 15 (third column)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                   help="wall: elapsed time (what a user waits); process: this process's CPU time, all threads "
                        "(far less sensitive to other jobs on shared cores)")
    p.add_argument("--attacks", default="fgsm", help="comma-separated training attacks, from: fgsm, fgsm_rs, pgd")
    p.add_argument("--train-steps", type=int, default=7, help="k of the pgd training attack")
    return p.parse_args(argv)


def fmt(rates: list[float]) -> str:
    return f"{statistics.median(rates):.0f} [{min(rates):.0f}–{max(rates):.0f}]"


def fmt_ratio(num: list[float], den: list[float]) -> str:
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}]"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)  # before any compute
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    for a in attacks:
        if a not in TRAIN_ATTACKS:
            raise SystemExit(f"unknown training attack {a!r}; choose from {', '.join(TRAIN_ATTACKS)}")

    ds = load_dataset("mnist-sample")
    train_split = ds.train
    x_inv_all = shifted(train_split.images)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
          f"; data: {ds.name} train n={len(train_split)}; arch paper (embed_dim 4); batch {args.batch_size}; "
          f"{args.warmup} warm-up + {args.repeats}×{args.batches} timed batches per implementation; "
          f"clock {args.clock}; load average {load_average()}")

    steps: dict[str, StepFactory] = {"amltui": TrainStep, "naive": NaiveStep}
    if args.before:
        steps["before"] = BeforeStep
    rows = []
    for attack, variant in ((a, v) for a in attacks for v in variants):
        config = RunConfig.resolve(variant, "paper", batch_size=args.batch_size, seed=args.seed,
                                   overrides=[f"train_attack={attack}", f"train_steps={args.train_steps}"])
        label = variant if attacks == ["fgsm"] else f"{variant}/{attack}"
        torch.manual_seed(config.seed)
        init_state = build_model(config.arch, embed_dim=config.embed_dim, normalize=config.normalize).state_dict()
        inv = x_inv_all if config.needs_invariance else None

        # Fairness check: same batch, same weights → same loss and gradients.
        idx = torch.arange(args.batch_size)
        batch = (to_float(train_split.images[idx]), train_split.labels[idx], inv[idx] if inv is not None else None)
        same = check_same(config, init_state, batch, steps)
        print(f"[{label}] same batch, same weights: " + "; ".join(
            f"{n} loss {loss:.7f} (max rel grad diff vs amltui {g:.1e})" for n, (loss, g) in same.items()))
        ref_loss = same["amltui"][0]
        for name, (loss, g) in same.items():
            if not (math.isclose(loss, ref_loss, rel_tol=1e-5, abs_tol=1e-6) and g < 1e-3):
                print(f"  WARNING: {name} does not compute the same step as amltui")

        impls = [
            Impl(name, cls, (naive_batches if name == "naive" else amltui_batches)(
                train_split, inv, args.batch_size, args.seed), config, init_state)
            for name, cls in steps.items()
        ]
        for impl in impls:
            impl.run(args.warmup, record=False)
        for r in range(args.repeats):
            order = impls if r % 2 == 0 else impls[::-1]  # alternate who goes first
            for impl in order:
                impl.run(args.batches, clock=CLOCKS[args.clock])
        rows.append((label, {impl.name: impl.rates for impl in impls},
                     {impl.name: max(impl.step_rates) for impl in impls}))
        print(f"[{label}] amltui path {impls[0].step.path!r}; " + ", ".join(
            f"{impl.name} {fmt(impl.rates)} img/s" for impl in impls), flush=True)

    print(f"\nload average at the end: {load_average()}")
    head = f"{'variant':<18} {'amltui img/s':>16} {'naive img/s':>16} {'amltui/naive':>20} {'best steps':>10}"
    if args.before:
        head += f" {'before img/s':>16} {'amltui/before':>20}"
    print(head)
    for variant, rates, best in rows:
        line = (f"{variant:<18} {fmt(rates['amltui']):>16} {fmt(rates['naive']):>16} "
                f"{fmt_ratio(rates['amltui'], rates['naive']):>20} {best['amltui'] / best['naive']:>10.2f}")
        if args.before:
            line += f" {fmt(rates['before']):>16} {fmt_ratio(rates['amltui'], rates['before']):>20}"
        print(line)
    print("img/s: median [min–max] over the timed blocks. Ratios: median [min–max] of the per-repeat ratios of\n"
          "adjacent blocks (interleaved, order alternating: load affects both sides alike); best steps: ratio of\n"
          "the fastest single steps (the least disturbed by other work). Target: amltui/naive ≥ 2 per variant.")


def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
