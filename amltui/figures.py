"""PNG figures (matplotlib, headless): invariance example grids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def invariance_grid(x: torch.Tensor, labels: torch.Tensor, inv: Any, pool: torch.Tensor, path: Path) -> Path:
    """Rows of (x, neighbour aligned to x, x*) with the original label, the neighbour's class and the target."""
    from core.attacks.transforms import invert_transforms

    n = x.shape[0]
    neighbours = invert_transforms(pool[inv.neighbour_index.cpu()], inv.transform.cpu()).clamp(0, 1)
    fig, axes = plt.subplots(n, 3, figsize=(4.2, 1.45 * n), squeeze=False)
    for i in range(n):
        tx, ty, deg = (float(v) for v in inv.transform[i])
        panels = [
            (x[i], f"x: label {int(labels[i])}"),
            (neighbours[i], f"n (aligned)\nt=({tx:+.1f},{ty:+.1f}) r={deg:+.0f}°"),
            (inv.x_star[i].cpu(), f"x*: target {int(inv.target[i])}"),
        ]
        for ax, (img, title) in zip(axes[i], panels, strict=True):
            ax.imshow(img.squeeze(0).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.suptitle(f"invariance examples (L∞ ε={inv.eps}, {inv.mode})", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
