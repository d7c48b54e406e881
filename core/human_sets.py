"""Tramèr et al.'s published, human-labelled invariance examples (MNIST test images).

Tramèr, Behrmann, Carlini, Papernot, Jacobsen (2020), "Fundamental Tradeoffs between Invariance and Sensitivity
to Adversarial Perturbations", published their invariance examples with one human label each in the MIT-licensed
repository ftramer/Excessive-Invariance, folder ``invariance_examples/``:

- ``linf/automated_eps03.npy`` (100, float32 in 0..255), ``linf/automated_eps04.npy`` (100, uint8),
  ``linf/manual_eps04.npy`` (50, uint8), ``l0/automated.npy`` (100, uint8); each with ``*_labels.npy``;
- ``indexs.npy`` (the MNIST test indices of the automated sets) and ``linf/manual_indexs.npy``.

The loader reads a local copy of that folder or downloads the files where the network allows.
"""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

BASE_URL = "https://raw.githubusercontent.com/ftramer/Excessive-Invariance/master/invariance_examples/"


@dataclass(frozen=True)
class HumanSetSpec:
    images: str
    labels: str
    indices: str
    eps: float | None  # L∞ budget; None for the L0 set
    description: str


HUMAN_SETS: dict[str, HumanSetSpec] = {
    "linf-eps0.3-automated": HumanSetSpec("linf/automated_eps03.npy", "linf/automated_eps03_labels.npy",
                                          "indexs.npy", 0.3, "100 automated L∞ examples, ε = 0.3"),
    "linf-eps0.4-automated": HumanSetSpec("linf/automated_eps04.npy", "linf/automated_eps04_labels.npy",
                                          "indexs.npy", 0.4, "100 automated L∞ examples, ε = 0.4"),
    "linf-eps0.4-manual": HumanSetSpec("linf/manual_eps04.npy", "linf/manual_eps04_labels.npy",
                                       "linf/manual_indexs.npy", 0.4, "50 manual L∞ examples, ε = 0.4"),
    "l0-automated": HumanSetSpec("l0/automated.npy", "l0/automated_labels.npy", "indexs.npy", None,
                                 "100 automated L0 examples"),
}


class HumanSetsNotFound(FileNotFoundError):
    """The published files are neither in the given folder nor downloadable."""


@dataclass(frozen=True)
class HumanSet:
    name: str
    images: torch.Tensor  # (N, 1, 28, 28) float32 in [0, 1]
    human_labels: torch.Tensor  # (N,) int64
    test_indices: torch.Tensor  # (N,) int64 indices into the MNIST test split
    eps: float | None


def default_cache_dir() -> Path:
    return Path(os.environ.get("AMLTUI_DATA_DIR") or Path.home() / ".cache" / "amltui" / "data") / "human-sets"


def _fetch(relative: str, cache: Path, timeout: float) -> Path:
    target = cache / relative
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(BASE_URL + relative, timeout=timeout) as response:  # noqa: S310 (fixed https URL)
        data = response.read()
    np.load(io.BytesIO(data))  # refuse to cache anything that is not a .npy array
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def locate(folder: Path | None = None, *, download: bool = True, cache: Path | None = None,
           timeout: float = 30.0) -> Path:
    """The folder holding the published files: ``folder`` (checked), else a cache filled by download."""
    needed = sorted({f for spec in HUMAN_SETS.values() for f in (spec.images, spec.labels, spec.indices)})
    if folder is not None:
        folder = Path(folder)
        if (folder / "invariance_examples").is_dir():
            folder = folder / "invariance_examples"
        missing = [f for f in needed if not (folder / f).is_file()]
        if missing:
            raise HumanSetsNotFound(
                f"{folder} lacks {', '.join(missing)}; it should be a copy of the folder invariance_examples/ of "
                "github.com/ftramer/Excessive-Invariance"
            )
        return folder
    cache = cache or default_cache_dir()
    missing = [f for f in needed if not (cache / f).is_file()]
    if missing and not download:
        raise HumanSetsNotFound(
            f"the human-labelled sets are not in {cache}; pass --human-sets-dir DIR (a copy of invariance_examples/ "
            "from github.com/ftramer/Excessive-Invariance) or allow the download"
        )
    try:
        for relative in missing:
            _fetch(relative, cache, timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise HumanSetsNotFound(
            f"could not download the human-labelled sets ({exc}); pass --human-sets-dir DIR holding a copy of "
            "invariance_examples/ from github.com/ftramer/Excessive-Invariance"
        ) from exc
    return cache


def load_human_sets(folder: Path) -> dict[str, HumanSet]:
    """Every published set from a folder laid out like ``invariance_examples/``."""
    sets = {}
    for name, spec in HUMAN_SETS.items():
        images = np.load(folder / spec.images, allow_pickle=False)
        labels = np.load(folder / spec.labels, allow_pickle=False)
        indices = np.load(folder / spec.indices, allow_pickle=False)
        if images.ndim == 4:
            images = images.reshape(images.shape[0], 28, 28)
        if images.shape[1:] != (28, 28) or not (len(images) == len(labels) == len(indices)):
            raise ValueError(f"{folder / spec.images}: expected (N, 28, 28) images with N labels and N indices, "
                             f"got {images.shape}, {labels.shape}, {indices.shape}")
        _check_labels_and_indices(folder / spec.labels, labels, folder / spec.indices, indices)
        # The files mix uint8 and float32, all on the 0..255 scale.
        pixels = torch.from_numpy(images.astype(np.float32) / 255.0).clamp_(0, 1).unsqueeze(1)
        sets[name] = HumanSet(name, pixels, torch.from_numpy(labels.astype(np.int64)),
                              torch.from_numpy(indices.astype(np.int64)), spec.eps)
    return sets


MNIST_TEST_SIZE = 10_000


def _check_labels_and_indices(label_path: Path, labels: np.ndarray, index_path: Path, indices: np.ndarray) -> None:
    """Refuse labels outside 0..9 and indices outside the MNIST test split (a negative one would wrap)."""
    for path, values, high, what in ((label_path, labels, 9, "labels"),
                                     (index_path, indices, MNIST_TEST_SIZE - 1, "MNIST test indices")):
        if not np.issubdtype(values.dtype, np.number) or not np.array_equal(values, np.round(values)):
            raise ValueError(f"{path}: {what} must be whole numbers, found dtype {values.dtype}")
        bad = values[(values < 0) | (values > high)]
        if bad.size:
            raise ValueError(f"{path}: {what} must lie in 0..{high}, found {int(bad[0])}; the file is damaged, "
                             "fetch a fresh copy of invariance_examples/")


@dataclass(frozen=True)
class HumanSetResult:
    name: str
    n: int
    acc_human: float  # % predictions equal to the human label
    n_changed: int  # examples whose human label differs from the original test label
    follow_human: float | None  # % of those predicted as the human label
    keep_original: float | None  # % of those predicted as the original label
    outside_budget: int  # examples with pixels beyond the L∞ budget around the original image
    max_excess: float  # largest such excess, in pixel units
    # The other side of the split (needs the original labels): examples whose human label is the original one, and
    # the % of them predicted as that label. With follow_human (the same agreement on the changed examples) it says
    # whether a higher agreement comes from following humans where the label changed or from keeping it elsewhere.
    n_unchanged: int = 0
    agree_unchanged: float | None = None


def score_human_set(predict: Callable[[torch.Tensor], torch.Tensor], hs: HumanSet,
                    original_images: torch.Tensor | None, original_labels: torch.Tensor | None) -> HumanSetResult:
    """Agreement with human labels; with the originals, split into the examples whose human label changed
    (follow_human / keep_original) and those whose did not (agree_unchanged).

    ``original_*`` are the MNIST test images (uint8 or float) and labels at ``hs.test_indices``.
    """
    pred = predict(hs.images).cpu()
    acc = 100.0 * float((pred == hs.human_labels).float().mean())
    n_changed, follow, keep, outside, excess = 0, None, None, 0, 0.0
    n_unchanged, agree_unchanged = 0, None
    if original_labels is not None:
        changed = hs.human_labels != original_labels.cpu()
        n_changed, n_unchanged = int(changed.sum()), int((~changed).sum())
        if n_changed:
            follow = 100.0 * float((pred[changed] == hs.human_labels[changed]).float().mean())
            keep = 100.0 * float((pred[changed] == original_labels.cpu()[changed]).float().mean())
        if n_unchanged:
            agree_unchanged = 100.0 * float((pred[~changed] == hs.human_labels[~changed]).float().mean())
    if original_images is not None and hs.eps is not None:
        orig = original_images.float().cpu()
        orig = orig / 255.0 if original_images.dtype == torch.uint8 else orig
        # The published files were rounded to 8 bits: a few pixels land just past the ball. Reported, not fatal.
        over = ((hs.images - orig).abs() - hs.eps).flatten(1).amax(1)
        outside = int((over > 1e-6).sum())
        excess = max(0.0, float(over.max()))
    return HumanSetResult(hs.name, len(hs.human_labels), acc, n_changed, follow, keep, outside, excess,
                          n_unchanged, agree_unchanged)
