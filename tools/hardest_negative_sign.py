"""How often the mined hardest negative points the opposite way (cos < 0) in finished runs' models.

The table behind docs/results.md, "The triplet's distance and embedding width". Under the paper's D = 1 − |cos|
(distance=abs_cos) a negative at cos ≈ −1 is "as close as" one at cos ≈ +1, although the linear head gives h and −h
opposite logits; this counts how many hardest negatives are of that kind. The test images of each run's dataset, in
seeded batches of 64 (the quick preset's training batch), natural negatives (the anchors' own embeddings, the
default `negatives`), each run's own distance and weights (its `select` rule), as in training:

    python tools/hardest_negative_sign.py --runs-dir /tmp/triplet-runs --sweep triplet-distance
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from core.config import RunConfig
from core.data import load_dataset, to_float
from core.losses import HardestNegativeMiner, make_distance
from core.train import load_model


def negative_sign_share(h: torch.Tensor, labels: torch.Tensor, distance: str, batch: int = 64,
                        seed: int = 0) -> tuple[float, int]:
    """(% of anchors whose hardest other-class negative has cos < 0, number of anchors), over seeded batches."""
    miner = HardestNegativeMiner(make_distance(distance))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    opposite = anchors = 0
    for start in range(0, len(labels) - batch + 1, batch):
        idx = order[start:start + batch]
        hb, yb = h[idx], labels[idx]
        mined = miner(hb, hb, hb, yb)
        cos = F.cosine_similarity(hb, hb[mined.negative_idx], dim=1)
        opposite += int(((cos < 0) & mined.valid).sum())
        anchors += int(mined.valid.sum())
    return 100.0 * opposite / max(anchors, 1), anchors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--sweep", help="only the runs of this sweep")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = json.loads((args.runs_dir / "store.json").read_text())["runs"].values()
    shares: dict[tuple[str, str, int], list[float]] = {}
    for record in records:
        if record.get("status") != "done" or (args.sweep and record.get("sweep") != args.sweep):
            continue
        folder = args.runs_dir / record["id"]
        config = RunConfig.from_dict(json.loads((folder / "config.json").read_text()))
        test = load_dataset(config.dataset, config.data_dir).test
        model = load_model(folder / "checkpoint.pt", config, torch.device("cpu"))
        with torch.no_grad():
            h = model.embed(to_float(test.images))
        share, anchors = negative_sign_share(h, test.labels, config.distance)
        shares.setdefault((record["variant"], config.distance, config.embed_dim), []).append(share)
        print(f"{record['id']}: {share:.1f}% of {anchors} anchors", flush=True)
    for (variant, distance, dim), values in sorted(shares.items()):
        spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
        print(f"{variant} distance={distance} embed_dim={dim}: {statistics.mean(values):.1f}{spread} "
              f"(n={len(values)} runs; per run {', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
