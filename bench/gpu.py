"""GPU training throughput per variant (eager / amp / compile) and the projected wall time of the paper's Table 1.

Given a CUDA GPU, for each variant and mode it times core.step.TrainStep.step (the no-sync step core.train uses)
on the paper architecture, batch 256, data resident on the GPU (60,000 random uint8 images: speed does not
depend on pixel values), the model in channels_last, and prints img/s. Then, for ``--slots-per-gpu`` 1..4, it
runs that many worker processes at once on the GPU (the executor's slots) with each variant's fastest mode and
projects the wall time of Table 1: 3 variants × 3 seeds × 200 epochs × 60,000 images, the 9 jobs scheduled in
waves of ``slots`` concurrent jobs at the measured per-process speed. The projection counts training steps
only (the per-epoch monitor and the final evaluation come on top; bench/eval.py measures those).

Without a GPU it says so and exits with status 0 (``--device cpu`` runs the same logic on the CPU with tiny
sizes, for the tests; its figures mean nothing).

    .venv/bin/python bench/gpu.py                                   # about 5 min on one GPU
    .venv/bin/python bench/gpu.py --modes eager,amp --slots 1,2 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

MODES = {"eager": [], "amp": ["amp=true"], "compile": ["compile=true"], "amp+compile": ["amp=true", "compile=true"]}
VARIANTS = ("baseline", "ml_sa", "ml_sa_ia")
TABLE1 = dict(variants=3, seeds=3, epochs=200, images=60_000)
ROOT = Path(__file__).resolve().parent.parent


def measure(variant: str, mode: str, device: str, seconds: float, steps: int, batch: int, n: int) -> dict:
    """img/s of TrainStep.step for one variant and mode: warm-up (compilation included), then timed steps."""
    from core.config import RunConfig
    from core.models import build_model
    from core.step import TrainStep, use_channels_last
    from core.train import make_optimizer

    dev = torch.device(device)
    config = RunConfig.resolve(variant, "paper", batch_size=batch, overrides=MODES[mode])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model("paper").to(dev)
    use_channels_last(model)
    step = TrainStep(config, model, make_optimizer(config, model), torch.Generator().manual_seed(1),
                     torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen).to(dev)
    labels = torch.randint(0, 10, (n,), generator=gen).to(dev)
    x_q = images.roll(1, dims=-1) if config.needs_invariance else None

    def run(k: int) -> torch.Tensor:
        loss = torch.zeros((), device=dev)
        for _ in range(k):
            idx = torch.randint(0, n, (batch,), device=dev)
            x = images[idx].to(torch.float32).div_(255.0)
            inv = x_q[idx].to(torch.float32).div_(255.0) if x_q is not None else None
            loss = step.step(x, labels[idx], inv)["loss"]
        return loss

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    started = time.perf_counter()
    run(3)  # warm-up: compilation, cuDNN autotuning, allocator
    sync()
    warmup = time.perf_counter() - started
    done, start = 0, time.perf_counter()
    while done < steps or time.perf_counter() - start < seconds:
        last = run(steps)
        done += steps
        sync()
    took = time.perf_counter() - start
    return {"variant": variant, "mode": mode, "img_s": done * batch / took, "warmup_s": warmup,
            "finite": math.isfinite(float(last))}


def concurrent(variant: str, mode: str, slots: int, args: argparse.Namespace) -> float:
    """Per-process img/s with ``slots`` worker processes training the variant on the device at the same time."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--modes", mode,
           "--device", args.device, "--seconds", str(args.seconds), "--steps", str(args.steps),
           "--batch", str(args.batch), "--n", str(args.n)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(slots)]
    rates = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"worker failed ({proc.returncode}) for {variant}/{mode} with {slots} slots")
        rates.append(json.loads(out.strip().splitlines()[-1])["img_s"])
    return min(rates)  # the slowest slot sets a wave's length


def project(rates: dict[str, float], slots: int) -> float:
    """Seconds for Table 1's 9 jobs in waves of ``slots`` concurrent jobs, each at its variant's rate."""
    jobs = [v for v in VARIANTS for _ in range(TABLE1["seeds"])]
    per_job = TABLE1["epochs"] * TABLE1["images"]
    total = 0.0
    for start in range(0, len(jobs), slots):
        total += max(per_job / rates[v] for v in jobs[start:start + slots])
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to test the logic")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--modes", default="eager,amp,compile", help="comma-separated from: " + ", ".join(MODES))
    p.add_argument("--slots", default="1,2,3,4", help="executor settings (--slots-per-gpu) to project")
    p.add_argument("--seconds", type=float, default=8.0, help="minimum timed seconds per measurement")
    p.add_argument("--steps", type=int, default=20, help="steps between synchronisations")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n", type=int, default=60_000, help="images resident on the device")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU visible (torch.cuda.is_available() is False): bench/gpu.py measures GPU throughput "
              "only, so there is nothing to measure here. On the CPU use bench/train_step.py.")
        return 0
    variants = [v for v in args.variants.split(",") if v]
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES] + [v for v in variants if v not in VARIANTS]
    if bad:
        print(f"unknown mode or variant: {', '.join(bad)}", file=sys.stderr)
        return 2
    if args.worker:
        print(json.dumps(measure(args.worker, modes[0], args.device, args.seconds, args.steps, args.batch, args.n)))
        return 0

    name = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "CPU"
    print(f"device {args.device} ({name}), torch {torch.__version__}; paper arch, batch {args.batch}, "
          f"{args.n} images on the device; TrainStep.step, no host sync inside the timed loop")
    best: dict[str, tuple[str, float]] = {}
    print(f"{'variant':<10} " + " ".join(f"{m + ' img/s':>18}" for m in modes) + f" {'fastest':>12}")
    for v in variants:
        row = {}
        for m in modes:
            r = measure(v, m, args.device, args.seconds, args.steps, args.batch, args.n)
            row[m] = r["img_s"]
            if not r["finite"]:
                print(f"  WARNING: {v}/{m}: non-finite loss")
        fastest = max(row, key=row.__getitem__)
        best[v] = (fastest, row[fastest])
        print(f"{v:<10} " + " ".join(f"{row[m]:>18.0f}" for m in modes) + f" {fastest:>12}", flush=True)
    if set(variants) != set(VARIANTS):
        print("(Table 1 projection needs all three variants)")
        return 0
    print(f"\nTable 1 ({TABLE1['variants']} variants × {TABLE1['seeds']} seeds × {TABLE1['epochs']} epochs × "
          f"{TABLE1['images']:,} images), training steps only, each variant in its fastest mode:")
    print(f"{'--slots-per-gpu':>15} " + " ".join(f"{v + ' img/s/slot':>22}" for v in VARIANTS)
          + f" {'projected wall time':>20}")
    for slots in (int(s) for s in args.slots.split(",") if s):
        rates = {v: (best[v][1] if slots == 1 else concurrent(v, best[v][0], slots, args)) for v in VARIANTS}
        hours = project(rates, slots) / 3600
        print(f"{slots:>15} " + " ".join(f"{rates[v]:>22.0f}" for v in VARIANTS) + f" {hours:>18.1f} h",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
