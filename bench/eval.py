"""Evaluation and monitor throughput (images/s): A_SA, A_PGD and A_IA scoring, before and after issue 15.

after   core.evaluate as it is: A_orig and A_SA from one pass (FGSM's forward gives the clean predictions),
        A_IA and A_IA→target from one forward, counts kept on the device (one host read per metric).
        "after + cl + pool-first" adds what core.evaluate.evaluate and the per-epoch monitor really use: the
        model in channels_last, each PReLU → MaxPool pair pooled first (core.scoring.FastForward).
before  one pass per metric (clean forward; FGSM = forward + input backward, then a forward; A_IA and
        A_IA→target each a forward), a host read per batch — core/evaluate.py before issue 15.

A_PGD is the same attack code on both sides (PGD-k: k forwards + input backwards and a final forward per batch),
on the plain model (before) and on channels_last + pool-first (after). The monitor line is
core.train.monitor_accuracy for one epoch (1,000 images clean + FGSM, 200 of them PGD-10). Paper architecture
(random weights: speed does not depend on them), mnist-sample's test split, eval batch 1000, CPU, interleaved.

    .venv/bin/python bench/eval.py                      # about 3 min on 2 shared cores
    .venv/bin/python bench/eval.py --pgd-steps 40 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from core.attacks import FGSM, PGD
from core.config import RunConfig
from core.data import Split, load_dataset, to_float
from core.evaluate import score, score_clean_and_fgsm, score_two_labelings
from core.models import build_model
from core.scoring import FastForward
from core.step import use_channels_last
from core.train import monitor_accuracy, monitor_pgd_indices


def old_score(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, bs: int,
              attack: Callable | None = None) -> int:
    """The pre-issue-15 loop: a host read per batch."""
    correct = 0
    for start in range(0, len(labels), bs):
        x, y = to_float(images[start:start + bs]), labels[start:start + bs]
        if attack is not None:
            x = attack(x, y)
        with torch.no_grad():
            correct += int((model(x).argmax(1) == y).sum())
    return correct


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="test images per metric")
    p.add_argument("--pgd-steps", type=int, default=10, help="k of the timed PGD (the paper preset uses 40)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist-sample")
    test = ds.test if len(ds.test) <= args.n else ds.test.subset(args.n, seed=0, stratified=True)
    n, bs = len(test), 1000
    x_inv = to_float(test.images).roll(1, dims=-1)
    target = (test.labels + 1) % 10
    config = RunConfig.resolve("ml_sa", "paper", overrides=["monitor_pgd=200", "monitor_pgd_steps=10"])
    monitor = ds.test if len(ds.test) <= 1000 else ds.test.subset(1000, seed=0, stratified=True)
    torch.manual_seed(0)
    plain = build_model("paper").eval()
    fast = build_model("paper").eval()
    fast.load_state_dict(plain.state_dict())
    use_channels_last(fast)
    fast = FastForward(fast)  # as core.evaluate and the monitor score: channels_last + pool-first
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n} mnist-sample test images, batch {bs}; "
          f"PGD-{args.pgd_steps}; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")

    def pgd(model: torch.nn.Module) -> Callable[[], object]:
        attack = PGD(model, eps=0.3, alpha=0.01, steps=args.pgd_steps, generator=torch.Generator().manual_seed(0))
        return lambda: score(model, test.images, test.labels, batch_size=bs, attack=attack)

    cases: dict[str, dict[str, Callable[[], object]]] = {
        "A_orig + A_SA": {
            "before": lambda: (old_score(plain, test.images, test.labels, bs),
                               old_score(plain, test.images, test.labels, bs, FGSM(plain, 0.3))),
            "after": lambda: score_clean_and_fgsm(plain, test.images, test.labels, eps=0.3, batch_size=bs),
            "after + cl + pool-first": lambda: score_clean_and_fgsm(fast, test.images, test.labels, eps=0.3,
                                                                  batch_size=bs),
        },
        "A_IA + A_IA_target": {
            "before": lambda: _old_two(plain, x_inv, test.labels, target, bs),
            "after": lambda: score_two_labelings(plain, x_inv, test.labels, target, batch_size=bs),
            "after + cl + pool-first": lambda: score_two_labelings(fast, x_inv, test.labels, target, batch_size=bs),
        },
        f"A_PGD (PGD-{args.pgd_steps})": {"before": pgd(plain), "after + cl + pool-first": pgd(fast)},
        "monitor (1 epoch)": {
            "before": lambda: _old_monitor(plain, monitor, config),
            "after + cl + pool-first": lambda: monitor_accuracy(fast.model, monitor, config),
        },
    }
    print(f"{'scoring':<22} {'implementation':<22} {'images/s median [min–max]':>28} {'vs before':>10}")
    for name, impls in cases.items():
        for fn in impls.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {k: [] for k in impls}
        for r in range(args.repeats):
            for k in (list(impls) if r % 2 == 0 else list(impls)[::-1]):
                times[k].append(timed(impls[k]))
        images = len(monitor) if name.startswith("monitor") else n
        for k, ts in times.items():
            rates = [images / t for t in ts]
            ratio = statistics.median([b / t for t, b in zip(ts, times["before"], strict=True)])
            print(f"{name:<22} {k:<22} {statistics.median(rates):>12.0f} [{min(rates):.0f}–{max(rates):.0f}]"
                  f"{'':>6} {ratio:>9.2f}×", flush=True)
    print("images/s counts each test image once per scored pair (A_orig + A_SA: one image = both metrics).")


def _old_monitor(model: torch.nn.Module, split: Split, config: RunConfig) -> None:
    """Before: clean, FGSM and PGD-10 (on the first 200, stratified) as separate passes, a host read per batch."""
    old_score(model, split.images, split.labels, 1000)
    old_score(model, split.images, split.labels, 1000, FGSM(model, config.eps_s))
    sub = split.select(monitor_pgd_indices(split, config.monitor_pgd))
    pgd = PGD(model, eps=config.eps_s, alpha=2.5 * config.eps_s / config.monitor_pgd_steps,
              steps=config.monitor_pgd_steps, generator=torch.Generator().manual_seed(0))
    old_score(model, sub.images, sub.labels, 1000, pgd)


def _old_two(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, other: torch.Tensor, bs: int) -> int:
    """Before: A_IA and A_IA→target as two separate passes over the same float images."""
    total = 0
    for ys in (labels, other):
        for start in range(0, len(ys), bs):
            with torch.no_grad():
                total += int((model(x[start:start + bs]).argmax(1) == ys[start:start + bs]).sum())
    return total


if __name__ == "__main__":
    main()
