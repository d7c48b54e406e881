"""Invariance-attack search speed: exact vs fast vs the reference approach, on MNIST-sized pools.

    .venv/bin/python bench/invariance.py [--queries 200] [--ref-queries 3] [--data-dir DIR] [--threads N]

Queries are the first test images of Fashion-MNIST (Debian's dataset-fashion-mnist files), searched against the
full 60,000-image training pool. The reference approach is Tramèr et al.'s notebook: scipy.ndimage rotate +
shift of the query for each of the 775 transforms, then one scikit-learn NearestNeighbors query per class for
all nine other classes (the allowed-target filter comes after). Prints images/s, ratios, fast-vs-exact
agreement and the projected time for all 70,000 images. Timings are wall clock on whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from core.attacks.invariance import ALLOWED_TARGETS, GRID, InvarianceGenerator, agreement, linf_combine
from core.data import load_dataset

FULL_DATASET = 70_000


def reference_search(images: np.ndarray, labels: np.ndarray, nns: list, pool_by_class: list[np.ndarray],
                     eps: float = 0.3) -> list[int]:
    """The notebook's per-image loop (uint8 pixel scale); returns the chosen target per image."""
    from scipy.ndimage import rotate, shift

    targets = []
    for x, y in zip(images, labels, strict=True):
        xs = np.asarray([shift(rotate(x, r, reshape=False), (tx, ty)).reshape(784) for (tx, ty, r) in GRID])
        best_removed, best_target = np.inf, -1
        for c in range(10):
            if c == y:
                continue
            dist, idx = nns[c].kneighbors(xs, n_neighbors=1)
            t = int(np.argmin(dist.reshape(-1)))
            n = pool_by_class[c][idx.reshape(-1)[t]].astype(np.float32)
            tx, ty, r = GRID[t]
            aligned = shift(rotate(n, -r, reshape=False), (-tx, -ty))  # the notebook's (approximate) undo
            x_star = linf_combine(torch.from_numpy(x / 255.0), torch.from_numpy(aligned / 255.0), eps)
            removed = float((torch.from_numpy(x / 255.0) - x_star).clamp_min(0).sum())
            if c in ALLOWED_TARGETS[int(y)] and removed < best_removed:
                best_removed, best_target = removed, c
        targets.append(best_target)
    return targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=200, help="test queries for exact and fast")
    ap.add_argument("--ref-queries", type=int, default=3, help="test queries for the reference approach")
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--chunk-size", type=int, default=16, help="queries per batch (invariance_set_for's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = load_dataset("fashion-mnist", data_dir=args.data_dir)
    pool_x, pool_y = ds.train.images, ds.train.labels
    q, qy = ds.test.images[: args.queries], ds.test.labels[: args.queries]
    print(f"Fashion-MNIST: {args.queries} test queries vs a {len(pool_y)}-image pool, grid {len(GRID)} transforms, "
          f"torch threads {torch.get_num_threads()}")

    rate = {}
    sets = {}
    for mode in ("fast", "exact"):
        t0 = time.perf_counter()
        gen = InvarianceGenerator(pool_x, pool_y, mode=mode, chunk_size=args.chunk_size)
        t1 = time.perf_counter()
        gen.run(q[:8], qy[:8])  # warm-up: the first calls pay one-off allocation and BLAS start-up costs
        t1w = time.perf_counter()
        sets[mode] = gen.run(q, qy)
        t2 = time.perf_counter()
        rate[mode] = args.queries / (t2 - t1w)
        print(f"{mode:>5}: pool prep {t1 - t0:6.1f} s, warm-up {t1w - t1:4.1f} s, search {t2 - t1w:7.1f} s = "
              f"{rate[mode]:8.2f} images/s "
              f"({1000 / rate[mode]:7.1f} ms/image); 70k images: {FULL_DATASET / rate[mode] / 60:7.1f} min")
    stats = agreement(sets["exact"], sets["fast"])
    print("fast vs exact agreement: " + ", ".join(f"{k} {v:.4f}" for k, v in stats.items()))

    from sklearn.neighbors import NearestNeighbors

    x_np, y_np = pool_x[:, 0].numpy(), pool_y.numpy()
    t0 = time.perf_counter()
    pool_by_class = [x_np[y_np == c] for c in range(10)]
    nns = [NearestNeighbors(n_neighbors=1).fit(p.reshape(-1, 784)) for p in pool_by_class]
    t1 = time.perf_counter()
    ref_targets = reference_search(q[: args.ref_queries, 0].numpy(), qy[: args.ref_queries].numpy(), nns,
                                   pool_by_class)
    t2 = time.perf_counter()
    rate["reference"] = args.ref_queries / (t2 - t1)
    print(f"reference: fit {t1 - t0:5.1f} s, search {t2 - t1:7.1f} s = {rate['reference']:8.3f} images/s "
          f"({1000 / rate['reference']:7.0f} ms/image); 70k images: "
          f"{FULL_DATASET / rate['reference'] / 3600:6.1f} h")
    same = sum(int(a == b) for a, b in zip(ref_targets, sets["exact"].target[: args.ref_queries].tolist(),
                                           strict=True))
    print(f"reference vs exact: same target on {same}/{args.ref_queries} images (the reference uses cubic "
          "splines and an approximate undo, so small differences are expected)")
    print(f"speed-up per image: exact/reference {rate['exact'] / rate['reference']:.1f}x, "
          f"fast/reference {rate['fast'] / rate['reference']:.1f}x, fast/exact {rate['fast'] / rate['exact']:.1f}x")


if __name__ == "__main__":
    main()
