"""Measure candidate quick settings: A_orig / A_SA / A_PGD of the baseline per training attack × ε_s × epochs.

The table behind the `quick` preset's choice (docs/results.md, "Choosing the quick preset"). One process, one
thread by default; every run is the baseline variant of the quick preset with the given overrides, scored like
`amltui run` scores it (A_SA = FGSM at ε_s, A_PGD = PGD-40 at ε_s on a stratified test subset).

    python tools/quick_sweep.py --dataset mnist-sample --out sweep.jsonl
    python tools/quick_sweep.py --dataset mnist-sample --epochs 8 --attacks fgsm,fgsm_rs \
        --set holdout=1000 --set monitor_pgd=1000 --out holdout.jsonl     # choose on a training hold-out
    python tools/quick_sweep.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --train-subset 4000 --test-subset 1000 --out sweep-fmnist.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from core.config import RunConfig
from core.data import load_dataset
from core.evaluate import evaluate, scores_to_record
from core.flags import check_run
from core.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--attacks", default="fgsm,fgsm_rs,pgd")
    parser.add_argument("--eps", default="0.1,0.2,0.3")
    parser.add_argument("--epochs", default="8,20")
    parser.add_argument("--variant", default="baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per setting (appended)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    base = RunConfig.resolve(args.variant, "quick", dataset=args.dataset, data_dir=args.data_dir,
                             train_subset=args.train_subset, test_subset=args.test_subset)
    data = load_dataset(base.dataset, base.data_dir).with_subsets(base.train_subset, base.test_subset, seed=0)
    grid = itertools.product(args.attacks.split(","), [float(e) for e in args.eps.split(",")],
                             [int(e) for e in args.epochs.split(",")])
    for attack, eps, epochs in grid:
        config = RunConfig.resolve(
            args.variant, "quick", seed=args.seed, dataset=args.dataset, data_dir=args.data_dir,
            train_subset=args.train_subset, test_subset=args.test_subset, eval_ia=False,
            overrides=[f"train_attack={attack}", f"eps_s={eps}", f"epochs={epochs}", *args.overrides])
        started = time.perf_counter()
        result = train(config, data, device=device)
        train_s = time.perf_counter() - started
        metrics, counts = scores_to_record(evaluate(result.model, data.test, config))
        flags = [f.name for f in check_run(config, metrics, result.history)]
        row = {"dataset": args.dataset, "variant": args.variant, "seed": args.seed, "train_attack": attack,
               "eps_s": eps, "epochs": epochs, **metrics, "n": counts, "train_s": round(train_s, 1),
               "flags": flags, "overrides": args.overrides,
               "monitor_A_PGD": [round(h.get("monitor_A_PGD", float("nan")), 1) for h in result.history],
               # the last epoch's monitor: with --set holdout=N, numbers of training images the test never saw
               "monitor": result.monitor, "n_holdout": result.n_holdout,
               "monitor_last": {k: round(v, 2) for k, v in result.history[-1].items() if k.startswith("monitor_")}}
        with args.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
