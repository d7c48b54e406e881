"""`amltui invariance`'s science: generate a split's invariance set (cached, resumable), summarise it, and draw the
first examples of a split for a preview. The command line (amltui/cli/invariance.py) parses and prints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from amltui.app.results.png_figures import invariance_grid
from core.attacks.invariance import cached_agreement, invariance_set_for
from core.attacks.invariance import generate as generate_set
from core.attacks.invariance_cache import default_cache_root
from core.data import Dataset, to_float
from core.domains import target_table_note


def generate_split(data: Dataset, split: str, eps: float, mode: str, runs_dir: Path, device: torch.device | str,
                   progress: Callable[[int, int], None], warn: Callable[[str], None]) -> list[str]:
    """Make (or finish, or reuse) a split's cached set; its summary lines: targets per class, distance, the fast
    search's measured agreement with exact, and the target table's domain note."""
    cache_root = default_cache_root(runs_dir)
    inv = invariance_set_for(data, split, eps=eps, mode=mode, cache_root=cache_root, device=device,
                             progress=progress, warn=warn)
    counts = torch.bincount(inv.target.cpu(), minlength=10).tolist()
    lines = [f"{split}: {len(inv)} examples; targets per class {counts}; "
             f"mean ‖T(x) − n‖₂ {float(inv.distance.mean()):.3f}"]
    measured = cached_agreement(data, split, eps, mode, cache_root)
    if measured:
        lines.append(f"{split}: fast search agrees with exact on {100 * measured['same_neighbour']:.1f}% of "
                     f"{measured['sample']} sampled queries (same neighbour; same target "
                     f"{100 * measured['same_target']:.1f}%)")
    if target_table_note(data.name):
        lines.append(f"note: {target_table_note(data.name)}")
    return lines


def first_examples(data: Dataset, split: str, n: int, eps: float, mode: str, runs_dir: Path,
                   announce: Callable[[str], None]) -> Any:
    """The first n examples of the split: from the cached set, or generated (not cached) when there is none."""
    queries = data.train if split == "train" else data.test
    try:
        inv = invariance_set_for(data, split, eps=eps, mode=mode, cache_root=default_cache_root(runs_dir),
                                 cached_only=True)
    except FileNotFoundError:
        announce("no cached set yet: generating the first examples only "
                 f"(`amltui invariance generate --split {split}` caches the whole split)")
        exclude = torch.arange(n) if split == "train" else None
        inv = generate_set(queries.images[:n], queries.labels[:n], data.train.images, data.train.labels, eps=eps,
                           mode=mode, exclude_self=exclude)
    return inv.select(torch.arange(n))


def preview(data: Dataset, split: str, n: int, eps: float, mode: str, runs_dir: Path, path: Path,
            announce: Callable[[str], None]) -> Path:
    """A PNG grid of the first n examples: the image x, its aligned neighbour n and x*, with labels and targets."""
    queries = data.train if split == "train" else data.test
    n = min(n, len(queries))
    inv = first_examples(data, split, n, eps, mode, runs_dir, announce)
    return invariance_grid(to_float(queries.images[:n]), queries.labels[:n], inv, to_float(data.train.images), path)
