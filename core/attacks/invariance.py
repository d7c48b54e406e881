"""The L∞ invariance attack of Tramèr et al. 2020 ("Fundamental Tradeoffs between Invariance and Sensitivity").

For a query x of class y and a pool of training images (never x itself): for each allowed target class c, find
the (grid transform T, pool image n of class c) minimising ‖T(x) − n‖₂, align n back to x's frame with the exact
inverse of T, and combine x with it under the L∞ budget ε (:func:`linf_combine`). Among the allowed targets keep
the one whose x* removes the least ink. See docs/architecture.md; the search itself lives in ``invariance_search``,
the transforms in ``transforms`` and the on-disk cache in ``invariance_cache``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from core.attacks.base import project_linf
from core.attacks.invariance_cache import ChunkedCache, cache_key
from core.attacks.invariance_search import MODES, FastParams, PoolIndex
from core.attacks.transforms import (
    GRID,
    apply_transforms,
    as_transform_tensor,
    forward_matrices,
    inverse_matrices,
    invert_transforms,
    make_grid,
    transform_all,
)
from core.fsio import atomic_write_bytes, open_regular
from core.registry import INVARIANCE_EPS

if TYPE_CHECKING:
    from core.data import Dataset

__all__ = [
    "ALLOWED_TARGETS",
    "FORMAT_VERSION",
    "GRID",
    "FastParams",
    "InvarianceGenerator",
    "InvarianceSet",
    "agreement",
    "apply_transforms",
    "cached_agreement",
    "cache_fields",
    "forward_matrices",
    "generate",
    "ink_removed",
    "inverse_matrices",
    "invariance_set_for",
    "invert_transforms",
    "linf_combine",
    "make_grid",
    "transform_all",
]

log = logging.getLogger(__name__)

AGREEMENT_FILE = "agreement.json"
AGREEMENT_SAMPLE = 200  # queries of a fast set re-searched exactly to measure how often fast finds the same pair

#: Version of what an invariance set means on disk; bump it when generation changes results.
FORMAT_VERSION = 1

#: Hand-picked target classes per source class (Tramèr et al.'s notebook; order = tie-break order).
ALLOWED_TARGETS: dict[int, tuple[int, ...]] = {
    0: (4, 6, 8, 9),
    1: (4, 6, 7, 9),
    2: (8,),
    3: (8,),
    4: (8, 9),
    5: (3, 8),
    6: (0,),
    7: (2, 3),
    8: (3,),
    9: (3, 4, 5),
}

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------------ combine


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not INVARIANCE_EPS.contains(eps):
        raise ValueError(f"eps={eps} must be in {INVARIANCE_EPS}: the L∞ budget is in pixel units of [0, 1] images "
                         "(e.g. 0.3, not 76.5).")
    return eps


def linf_combine(x: Tensor, neighbour: Tensor, eps: float) -> Tensor:
    """Tramèr et al.'s L∞ combination of x with an aligned neighbour (elementwise, any shape, [0, 1] pixels).

    Start from x; where |n − x| ≤ ε and x > 0 take n; where |n − x| > ε move ε towards n; finally clip to
    [x − ε, x + ε] and to [0, 1]. Background pixels (x = 0) are therefore only inked where n exceeds ε.
    """
    eps = _check_eps(eps)
    if x.shape != neighbour.shape:
        raise ValueError(f"x and neighbour must have the same shape, got {tuple(x.shape)} and "
                         f"{tuple(neighbour.shape)}.")
    diff = neighbour - x
    close = diff.abs() <= eps
    out = torch.where(close & (x > 0), neighbour, x)
    out = torch.where(close, out, x + torch.sign(diff) * eps)
    return project_linf(out, x, eps)


def ink_removed(x: Tensor, x_star: Tensor) -> Tensor:
    """Per-example Σ max(x − x*, 0) over all but the first dimension."""
    return (x - x_star).clamp_min(0).flatten(1).sum(1)


# ------------------------------------------------------------------------------------------- result type


@dataclass
class InvarianceSet:
    """One invariance example per query, with where it came from."""

    x_star: Tensor  # (N, 1, H, W) float32 in [0, 1]
    target: Tensor  # (N,) int64 target class
    neighbour_index: Tensor  # (N,) int64 index of the neighbour in the pool
    transform: Tensor  # (N, 3) float32 (tx, ty, degrees) applied to the query to match the neighbour
    distance: Tensor  # (N,) float32 ‖T(x) − n‖₂ of the chosen pair, in [0, 1] pixel units
    eps: float
    mode: str

    TENSORS = ("x_star", "target", "neighbour_index", "transform", "distance")

    def __post_init__(self) -> None:
        n = self.x_star.shape[0]
        for name in self.TENSORS:
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.shape[:1] != (n,):
                raise ValueError(f"InvarianceSet.{name} must be a tensor with {n} rows, got "
                                 f"{getattr(value, 'shape', type(value))}.")
        if self.transform.ndim != 2 or self.transform.shape[1] != 3:
            raise ValueError(f"InvarianceSet.transform must be (N, 3), got {tuple(self.transform.shape)}.")

    def __len__(self) -> int:
        return int(self.x_star.shape[0])

    def __repr__(self) -> str:
        return f"InvarianceSet(n={len(self)}, eps={self.eps}, mode={self.mode!r}, device={self.x_star.device})"

    def to(self, device: torch.device | str) -> InvarianceSet:
        return replace(self, **{n: getattr(self, n).to(device) for n in self.TENSORS})

    def select(self, indices: Tensor | Sequence[int]) -> InvarianceSet:
        idx = torch.as_tensor(indices, dtype=torch.int64, device=self.x_star.device)
        if idx.ndim != 1:
            raise ValueError(f"select needs 1-D indices, got shape {tuple(idx.shape)}.")
        return replace(self, **{n: getattr(self, n)[idx] for n in self.TENSORS})

    def tensors(self) -> dict[str, Tensor]:
        return {n: getattr(self, n) for n in self.TENSORS}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tensors on CPU, eps, mode) for ``torch.save``; loads with ``weights_only=True``."""
        out: dict[str, Any] = {n: t.detach().cpu() for n, t in self.tensors().items()}
        out.update(eps=float(self.eps), mode=str(self.mode), format=FORMAT_VERSION)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InvarianceSet:
        missing = [n for n in (*cls.TENSORS, "eps", "mode") if n not in data]
        if missing:
            raise ValueError(f"not an invariance set: missing {missing}; regenerate it with generate().")
        if data.get("format", FORMAT_VERSION) != FORMAT_VERSION:
            raise ValueError(f"invariance set format {data.get('format')} != {FORMAT_VERSION}; regenerate it.")
        return cls(**{n: data[n] for n in cls.TENSORS}, eps=float(data["eps"]), mode=str(data["mode"]))


# --------------------------------------------------------------------------------------------- generation


def _as_float_images(images: Tensor, what: str) -> Tensor:
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(f"{what} must be (N, 1, H, H) images, got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise ValueError(f"{what} must be uint8 (0..255) or float in [0, 1], got {images.dtype}.")
    if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
        raise ValueError(f"{what} must lie in [0, 1]; float pixels in 0..255 must be divided by 255 first.")
    return images.float()


def _check_labels(labels: Tensor, n: int, what: str) -> Tensor:
    if labels.shape != (n,) or labels.dtype.is_floating_point:
        raise ValueError(f"{what} must be integer (N,) = ({n},), got {labels.dtype} {tuple(labels.shape)}.")
    if n and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise ValueError(f"{what} must be classes 0..9 (the allowed-target table covers 10 classes).")
    return labels.long()


class InvarianceGenerator:
    """The pool prepared once (sorted by class, norms, PCA), then any number of query batches."""

    def __init__(
        self,
        pool_images: Tensor,
        pool_labels: Tensor,
        *,
        eps: float = 0.3,
        mode: str = "exact",
        grid: Sequence[Sequence[float]] | Tensor = GRID,
        chunk_size: int = 16,
        device: torch.device | str | None = None,
        fast: FastParams | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use 'exact' (GEMM over everything) or 'fast' (shortlist).")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 query per batch, got {chunk_size}.")
        self.eps = _check_eps(eps)
        self.mode = mode
        self.chunk_size = int(chunk_size)
        self.device = torch.device(device) if device is not None else pool_images.device
        self.grid = as_transform_tensor(grid)
        pool = _as_float_images(pool_images, "pool_images")
        pool_labels = _check_labels(pool_labels, pool.shape[0], "pool_labels")
        self.pool_size = pool.shape[0]
        self.index = PoolIndex(pool, pool_labels, mode=mode, grid=self.grid, device=self.device, fast=fast)
        self.grid_f32 = self.grid.float().to(self.device)

    def run(
        self,
        images: Tensor,
        labels: Tensor,
        exclude_self: Tensor | None = None,
        progress: Progress | None = None,
    ) -> InvarianceSet:
        """Invariance examples for a batch of queries; see :func:`generate`."""
        x = _as_float_images(images, "images").to(self.device)
        n = x.shape[0]
        y = _check_labels(labels, n, "labels").to(self.device)
        if exclude_self is not None:
            exclude_self = torch.as_tensor(exclude_self, dtype=torch.int64, device=self.device)
            if exclude_self.shape != (n,):
                raise ValueError(f"exclude_self must be (N,) = ({n},) pool indices or -1, "
                                 f"got {tuple(exclude_self.shape)}.")
        out_x = torch.empty_like(x)
        out_target = torch.empty(n, dtype=torch.int64, device=self.device)
        out_index = torch.empty(n, dtype=torch.int64, device=self.device)
        out_t = torch.empty(n, dtype=torch.int64, device=self.device)
        out_d = torch.empty(n, dtype=torch.float32, device=self.device)
        done = 0
        for cls in range(10):
            members = (y == cls).nonzero().squeeze(1)
            for s in range(0, members.numel(), self.chunk_size):
                rows = members[s : s + self.chunk_size]
                excl = None if exclude_self is None else exclude_self[rows]
                best = self._batch(x[rows], cls, excl)
                out_x[rows], out_target[rows], out_index[rows], out_t[rows], out_d[rows] = best
                done += rows.numel()
                if progress is not None:
                    progress(done, n)
        return InvarianceSet(
            x_star=out_x,
            target=out_target,
            neighbour_index=out_index,
            transform=self.grid_f32[out_t],
            distance=out_d,
            eps=self.eps,
            mode=self.mode,
        )

    def _batch(self, x: Tensor, cls: int, excl: Tensor | None) -> tuple[Tensor, ...]:
        """Queries of one class: best neighbour per allowed target, combine, keep the least ink removed."""
        prepared = self.index.prepare(x)
        cands = []
        for c in ALLOWED_TARGETS[cls]:
            r = self.index.search(prepared, c, excl)
            if not bool(torch.isfinite(r.distance).all()):
                raise ValueError(f"no pool image of class {c} is available for a query of class {cls} once the "
                                 "query itself is excluded; give the pool more images of that class.")
            aligned = invert_transforms(self.index.images_at(r.pool_index), self.grid[r.transform_index.cpu()])
            x_star = linf_combine(x, aligned, self.eps)
            cands.append((x_star, r, ink_removed(x, x_star)))
        removed = torch.stack([c[2] for c in cands], dim=1)  # (B, C)
        pick = removed.argmin(1)  # first minimum = earliest target in the table, as the reference's strict <
        rows = torch.arange(x.shape[0], device=x.device)
        x_star = torch.stack([c[0] for c in cands], dim=1)[rows, pick]
        targets = torch.tensor(ALLOWED_TARGETS[cls], dtype=torch.int64, device=x.device)[pick]
        index = torch.stack([c[1].pool_index for c in cands], dim=1)[rows, pick]
        t_idx = torch.stack([c[1].transform_index for c in cands], dim=1)[rows, pick]
        dist = torch.stack([c[1].distance for c in cands], dim=1)[rows, pick]
        return x_star, targets, index, t_idx, dist


def generate(
    images: Tensor,
    labels: Tensor,
    pool_images: Tensor,
    pool_labels: Tensor,
    eps: float = 0.3,
    mode: str = "exact",
    exclude_self: Tensor | None = None,
    *,
    grid: Sequence[Sequence[float]] | Tensor = GRID,
    chunk_size: int = 16,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    fast: FastParams | None = None,
) -> InvarianceSet:
    """Tramèr et al.'s L∞ invariance example for every query (uint8 or [0, 1] float images).

    ``exclude_self[i]`` is the pool index of query i itself (or −1), so a training image never finds itself.
    ``mode`` "exact" searches every (transform, pool image) pair with GEMMs; "fast" re-ranks a PCA/coarse-grid
    shortlist exactly (≥ 99 % the same neighbours, see bench/invariance.py). ``chunk_size`` = queries per
    batch (memory ≈ chunk_size × 2.4 MB for the transformed queries plus GEMM blocks of ~64 MB).
    Runs on ``device`` (default: the images' device); results stay there.
    """
    gen = InvarianceGenerator(pool_images, pool_labels, eps=eps, mode=mode, grid=grid, chunk_size=chunk_size,
                              device=device if device is not None else images.device, fast=fast)
    return gen.run(images, labels, exclude_self, progress)


# ------------------------------------------------------------------------------------ dataset-level entry


def cache_fields(dataset: Dataset, split: str, eps: float, mode: str, grid: Sequence[Sequence[float]] | Tensor,
                 fast: FastParams | None = None) -> dict[str, Any]:
    """Everything an invariance set depends on, as plain JSON (hashed into the cache key)."""
    fields_ = {
        "what": "invariance-linf",
        "format_version": FORMAT_VERSION,
        "dataset": dataset.fingerprint,
        "split": split,
        "eps": float(eps),
        "grid": as_transform_tensor(grid).tolist(),
        "mode": mode,
        "pool": "train minus the query itself" if split == "train" else "train",
    }
    if mode == "fast":
        fields_["fast"] = (fast or FastParams()).describe()
    return fields_


def invariance_set_for(
    dataset: Dataset,
    split: str,
    eps: float = 0.3,
    mode: str = "fast",
    cache_root: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    *,
    grid: Sequence[Sequence[float]] | Tensor = GRID,
    chunk_size: int = 16,
    cache_chunk: int = 2048,
    fast: FastParams | None = None,
    warn: Callable[[str], None] | None = None,
    cached_only: bool = False,
    agreement_sample: int = AGREEMENT_SAMPLE,
) -> InvarianceSet:
    """The invariance set of a dataset split: queries = that split, pool = the training images.

    For "train" each query's own image is excluded from the pool. With ``cache_root`` (the folder holding the
    ``<key>/`` entries, normally ``default_cache_root(runs_dir)``) the set is loaded from / saved to disk in
    resumable chunks of ``cache_chunk`` queries; ``warn`` receives messages about damaged cache files.
    ``progress(done, total)`` counts queries. The result is on ``device`` (default: the dataset's device).
    With ``cached_only`` a missing cache entry raises FileNotFoundError instead of generating.
    A cached ``fast`` set also gets its measured agreement with ``exact`` on ``agreement_sample`` of its queries
    (``<key>/agreement.json``, see :func:`cached_agreement`); 0 skips the measurement.
    """
    _check_split_and_mode(split, mode)
    eps = _check_eps(eps)
    queries = dataset.train if split == "train" else dataset.test
    pool = dataset.train
    n = len(queries)
    if n == 0:
        raise ValueError(f"the {split} split of {dataset!r} is empty; nothing to attack.")
    dev = torch.device(device) if device is not None else queries.images.device
    make_gen = functools.partial(InvarianceGenerator, pool.images, pool.labels, eps=eps, mode=mode, grid=grid,
                                 chunk_size=chunk_size, device=dev, fast=fast)
    build = _chunk_builder(queries, split, dev, progress, make_gen)
    if cache_root is None:
        return InvarianceSet(**build(0, n), eps=eps, mode=mode).to(dev)
    cache = ChunkedCache(cache_root, cache_fields(dataset, split, eps, mode, grid, fast), n, cache_chunk, warn=warn)
    if cached_only and not cache.is_complete():
        raise FileNotFoundError(f"no complete cached invariance set for the {split} split in {cache.dir}")
    result = InvarianceSet(**cache.load_or_build(build, progress), eps=eps, mode=mode)
    path = cache.dir / AGREEMENT_FILE
    if mode == "fast" and agreement_sample > 0 and not path.exists():
        measured = _fast_vs_exact(result, queries, pool, split, eps, grid, chunk_size, dev, agreement_sample)
        atomic_write_bytes(path, json.dumps(measured, indent=1).encode("utf-8"))
    return result.to(dev)


def _check_split_and_mode(split: str, mode: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use 'exact' or 'fast'.")


def _chunk_builder(queries: Any, split: str, dev: torch.device, progress: Progress | None,
                   make_gen: Callable[[], InvarianceGenerator]) -> Callable[[int, int], dict[str, Tensor]]:
    """``build(start, end)``: the invariance examples of queries[start:end] (what ChunkedCache fills itself with).

    The generator is made on the first call only: a cache hit never pays for the pool index. For "train" each
    query's own image is excluded from the pool.
    """
    state: dict[str, InvarianceGenerator] = {}
    n = len(queries)

    def build(start: int, end: int) -> dict[str, Tensor]:
        if "gen" not in state:
            state["gen"] = make_gen()
        excl = torch.arange(start, end, device=dev) if split == "train" else None
        inner = None if progress is None else (lambda d, _t: progress(start + d, n))
        part = state["gen"].run(queries.images[start:end], queries.labels[start:end], excl, inner)
        return part.tensors()

    return build


def _fast_vs_exact(fast_set: InvarianceSet, queries: Any, pool: Any, split: str, eps: float,
                   grid: Sequence[Sequence[float]] | Tensor, chunk_size: int, dev: torch.device,
                   sample: int) -> dict[str, Any]:
    """Exact search on a fixed random sample (seed 0) of the queries; agreement of the fast set with it."""
    n = len(queries)
    k = min(sample, n)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:k].sort().values
    gen = InvarianceGenerator(pool.images, pool.labels, eps=eps, mode="exact", grid=grid, chunk_size=chunk_size,
                              device=dev)
    excl = idx.to(dev) if split == "train" else None
    exact = gen.run(queries.images[idx.to(queries.images.device)], queries.labels[idx.to(queries.labels.device)],
                    excl)
    result: dict[str, Any] = {"sample": k, "of": n, "sample_seed": 0}
    result.update(agreement(exact, fast_set.select(idx)))
    return result


def cached_agreement(dataset: Dataset, split: str, eps: float, mode: str, cache_root: str | Path,
                     grid: Sequence[Sequence[float]] | Tensor = GRID, fast: FastParams | None = None,
                     cache_chunk: int = 2048) -> dict[str, Any] | None:
    """The recorded fast-vs-exact agreement of a cached fast set (None for exact sets or when not measured)."""
    if mode != "fast":
        return None
    total = len(dataset.train if split == "train" else dataset.test)
    fields_ = {**cache_fields(dataset, split, eps, mode, grid, fast), "total": total, "chunk_size": cache_chunk}
    path = Path(cache_root) / cache_key(fields_) / AGREEMENT_FILE
    try:
        with open_regular(path) as f:  # a FIFO in its place is refused, never waited on
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


# -------------------------------------------------------------------------------------------- comparison


def agreement(a: InvarianceSet, b: InvarianceSet) -> dict[str, float]:
    """How far ``b`` (e.g. fast) reproduces ``a`` (e.g. exact) on the same queries.

    Returns n, same_neighbour, same_target, same_transform (fractions) and distance_ratio = mean of
    b.distance / a.distance (1.0 when they agree; per target, fast can only find the same or a farther pair).
    """
    if len(a) != len(b):
        raise ValueError(f"the two sets cover different queries ({len(a)} vs {len(b)} examples).")
    if len(a) == 0:
        raise ValueError("agreement of two empty sets is undefined.")
    b = b.to(a.x_star.device)
    ratio = b.distance / a.distance.clamp_min(1e-12)
    return {
        "n": float(len(a)),
        "same_neighbour": float((a.neighbour_index == b.neighbour_index).float().mean()),
        "same_target": float((a.target == b.target).float().mean()),
        "same_transform": float((a.transform == b.transform).all(1).float().mean()),
        "distance_ratio": float(ratio.mean()),
    }

