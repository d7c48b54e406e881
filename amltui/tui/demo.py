"""A made-up runs folder with fixed ids and times: for the dashboard's tests, snapshots and benchmark.

``python -m amltui.tui.demo DIR [--extra N]`` writes one, to try the dashboard without training anything.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from amltui.app.fsutil import atomic_write_json
from amltui.app.runs.records import TERMINAL, Status
from amltui.app.runs.store import Store
from core.config import RunConfig

CODE_VERSION = "0.1.0+demo"
FINGERPRINT = "d3m0f1n93rpr1nt0"
EPOCHS = 6


def _time(minute: int) -> str:
    return f"2026-01-0{1 + minute // 1440}T{minute // 60 % 24:02d}:{minute % 60:02d}:00.000000Z"


def epoch_line(variant: str, seed: int, epoch: int, epochs: int = EPOCHS) -> dict[str, Any]:
    """A plausible metrics.jsonl epoch line, a pure function of its arguments."""
    decay = math.exp(-epoch / 2.5)
    wobble = 0.02 * math.sin(epoch + seed)
    triplet = 0.0 if variant == "baseline" else 0.04 * decay
    return {"kind": "epoch", "epoch": epoch, "epochs": epochs, "train_loss": round(0.4 + 1.8 * decay + wobble, 4),
            "train_ce_clean": round(0.1 + 0.9 * decay, 4), "train_ce_adv": round(0.3 + 1.2 * decay, 4),
            "train_triplet_sa": round(triplet, 4), "monitor_A_orig": round(99 - 40 * decay + seed * 0.1, 2),
            "monitor_A_SA": round(90 - 55 * decay + seed * 0.2, 2), "seconds": 3.5}


def final_metrics(variant: str, seed: int) -> dict[str, float]:
    bump = {"baseline": 0.0, "ml_sa": 0.35, "ml_sa_ia": 0.1}.get(variant, 0.0)
    ia = {"baseline": 0.0, "ml_sa": -3.2, "ml_sa_ia": 2.1}.get(variant, 0.0)
    return {"A_orig": round(98.9 + bump + 0.07 * seed, 2), "A_SA": round(96.8 + bump + 0.11 * seed, 2),
            "A_IA": round(84.6 + ia - 0.9 * seed, 2), "A_IA_target": round(12.5 - ia / 2 + 0.4 * seed, 2),
            "A_PGD": round(71.3 + bump + 0.3 * seed, 2)}


def make_record(run_id: str, variant: str, seed: int, status: str, minute: int, epoch: int | None = None,
                epochs: int = EPOCHS) -> tuple[dict[str, Any], RunConfig]:
    config = RunConfig.resolve(variant, "quick", seed=seed, dataset="synthetic", epochs=epochs)
    epoch = epochs if epoch is None and status == Status.DONE else (epoch or 0)
    record: dict[str, Any] = {
        "id": run_id, "status": status, "variant": variant, "seed": seed, "dataset": "synthetic",
        "preset": "quick", "arch": config.arch, "overrides": [], "group": config.group_key(),
        "context": config.context_key(), "config_diff": config.diff_from_preset(), "config": config.to_dict(),
        "code_version": CODE_VERSION,
        "created": _time(minute), "started": None, "ended": None, "epoch": epoch, "epochs": epochs,
        "last": epoch_line(variant, seed, epoch, epochs) if epoch else {}, "metrics": {}, "metrics_n": {},
        "fingerprint": FINGERPRINT, "device": None, "host": None, "pid": None, "error": None, "traceback": None,
    }
    if status != Status.QUEUED:
        # host "demo-host" with no heartbeat file: the liveness check leaves "running" demo runs alone.
        record.update(started=_time(minute + 1), device="cpu", slot="cpu0", host="demo-host", executor="local")
    if status == Status.RUNNING:
        record["pid"] = 4242
    if status in TERMINAL:
        record["ended"] = _time(minute + 9)
    if status == Status.DONE:
        record["metrics"] = final_metrics(variant, seed)
        record["metrics_n"] = {k: 1000 for k in record["metrics"]}
    if status == Status.FAILED:
        record["error"] = "RuntimeError: demo failure (out of memory)"
    if status == Status.CANCELLED:
        record["error"] = "cancelled by the user"
    return record, config


# id, variant, seed, status, epoch (None = as the status implies)
DEMO_RUNS: tuple[tuple[str, str, int, str, int | None], ...] = (
    ("baseline-s0-demo", "baseline", 0, Status.DONE, None),
    ("baseline-s1-demo", "baseline", 1, Status.DONE, None),
    ("ml_sa-s0-demo", "ml_sa", 0, Status.DONE, None),
    ("ml_sa-s1-demo", "ml_sa", 1, Status.DONE, None),
    ("ml_sa_ia-s0-demo", "ml_sa_ia", 0, Status.RUNNING, 3),
    ("ml_sa_ia-s1-demo", "ml_sa_ia", 1, Status.QUEUED, None),
    ("baseline-s2-demo", "baseline", 2, Status.FAILED, 2),
)


def write_run(runs_dir: Path, record: dict[str, Any], config: RunConfig) -> None:
    folder = Path(runs_dir) / record["id"]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "config.json", config.to_dict())
    atomic_write_json(folder / "run.json", record)
    lines = [epoch_line(record["variant"], record["seed"], e, record["epochs"])
             for e in range(1, record["epoch"] + 1)]
    if record["metrics"]:
        lines.append({"kind": "eval", **record["metrics"], "n": record["metrics_n"]})
    (folder / "metrics.jsonl").write_text("".join(_dumps(line) + "\n" for line in lines), encoding="utf-8")
    log = [f"{record['started'] or record['created']} starting on cpu (2 threads), code {CODE_VERSION}"]
    log += [f"{record['created']} epoch={e['epoch']} train_loss={e['train_loss']}" for e in lines if "epoch" in e]
    if record["error"]:
        log.append(f"{record['ended']} {record['status']}: {record['error']}")
    (folder / "log.txt").write_text("\n".join(log) + "\n", encoding="utf-8")
    if record["status"] == Status.RUNNING:
        atomic_write_json(folder / "progress.json", {"kind": "batch", "batch": {
            "epoch": record["epoch"] + 1, "epochs": record["epochs"], "step": 5, "steps": 10, "loss": 0.8123}})


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj)


def seed_demo(runs_dir: Path, extra: int = 0) -> list[dict[str, Any]]:
    """Write the demo runs (plus ``extra`` finished ones) and an index of them; returns the records."""
    runs_dir = Path(runs_dir)
    records = []
    specs = list(DEMO_RUNS)
    variants = ("baseline", "ml_sa", "ml_sa_ia")
    specs += [(f"{variants[i % 3]}-s{10 + i // 3}-x{i:04d}", variants[i % 3], 10 + i // 3, Status.DONE, None)
              for i in range(extra)]
    for minute, (run_id, variant, seed, status, epoch) in enumerate(specs):
        record, config = make_record(run_id, variant, seed, status, minute * 10, epoch)
        write_run(runs_dir, record, config)
        records.append(record)
    Store(runs_dir).rebuild()  # the index of the folders just written
    return records


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m amltui.tui.demo", description=__doc__)
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--extra", type=int, default=0, help="extra finished runs")
    args = parser.parse_args()
    print(f"wrote {len(seed_demo(args.runs_dir, args.extra))} demo runs to {args.runs_dir}")


if __name__ == "__main__":
    main()
