"""Throughput (images/s) of the robustness attacks: FGSM, PGD-40 and AutoAttack standard (torchattacks).

For each architecture (quick = "small", paper) a model is trained briefly on the shipped mnist-sample with the
baseline objective (FGSM adversarial training at ε = 0.1, so it has some robustness to attack: AutoAttack's cost
depends on how many images survive its first components), then each attack is timed on the same stratified test
images at ε = 0.1 and ε = 0.3. Accuracy is printed beside the speed because AutoAttack only keeps attacking the
images still robust, so its images/s is higher on weaker models. Ratios are against PGD-40 in the same run.

    PYTHONPATH=. .venv/bin/python bench/robustness.py                     # both nets, 200 images, CPU (~10 min)
    PYTHONPATH=. .venv/bin/python bench/robustness.py --arch small --n 100 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from core import robustness as rob
from core.config import RunConfig
from core.data import load_dataset
from core.device import resolve_device
from core.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="small,paper", help="comma-separated: small (quick preset), paper")
    ap.add_argument("--n", type=int, default=200, help="test images (stratified)")
    ap.add_argument("--eps", default="0.1,0.3", help="comma-separated ε values")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_dataset("mnist-sample", None, seed=0)
    test = data.test.subset(args.n, seed=0, stratified=True)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"device {device}, n={args.n} mnist-sample test images")
    print("| net | ε | attack | accuracy % | seconds | images/s | × PGD-40 time |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.arch.split(","):
        preset = "quick" if arch == "small" else "paper"
        cfg = RunConfig.resolve("baseline", preset, epochs=args.epochs, eps_s=0.1, threads=args.threads,
                                batch_size=64, lr=1e-3, eval_ia=False)
        torch.manual_seed(0)
        started = time.monotonic()
        model = train(cfg, data, device=device).model.eval()
        print(f"<!-- {arch}: trained {args.epochs} epochs in {time.monotonic() - started:.0f} s -->")
        x, y = test.images.to(device), test.labels.to(device)
        for eps in (float(e) for e in args.eps.split(",")):
            results = {
                "FGSM": rob.fgsm(model, x, y, eps),
                "PGD-40": rob.pgd(model, x, y, eps, steps=40, alpha=0.01),
                "AutoAttack standard": rob.autoattack(model, x, y, eps, version="standard"),
            }
            ref = results["PGD-40"].seconds
            for name, r in results.items():
                extra = ""
                if r.broken:
                    extra = " (broken by " + ", ".join(f"{k} {v}" for k, v in r.broken.items()) + ")"
                print(f"| {arch} | {eps:g} | {name}{extra} | {r.percent:.1f} | {r.seconds:.1f} | "
                      f"{r.n / r.seconds:.1f} | {r.seconds / ref:.2f} |", flush=True)


if __name__ == "__main__":
    main()
