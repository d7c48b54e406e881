"""PNG figures (matplotlib, headless): invariance example grids, the PCA of embeddings, training curves."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from core.fsio import atomic_write_bytes  # noqa: E402

if TYPE_CHECKING:  # tensors arrive from callers that loaded torch; drawing needs none (the torch boundary)
    import torch


def png_path(path: Path, default_name: str = "figure.png") -> Path:
    """The file a figure is really written to (and reported as): ``default_name`` inside an existing folder,
    ``.png`` appended to a name without a suffix (as matplotlib itself would do, silently)."""
    path = Path(path)
    if path.is_dir():
        return path / default_name
    return path if path.suffix else path.with_name(path.name + ".png")


def save_png(fig: Any, path: Path, dpi: int) -> Path:
    """Write ``fig`` to ``png_path(path)`` (its folder made) and close it, even when the write fails.

    Drawn in memory, then written atomically: a reader never sees half a PNG, and a symbolic link planted where
    the PNG goes is refused (UnsafePath) instead of being written through (savefig opens the path as given).
    """
    return write_figure(fig, png_path(path), dpi)


def write_figure(fig: Any, path: Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG to exactly ``path`` (its folder made), in memory first, and close it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def grid_shape(n: int, max_groups: int = 4) -> tuple[int, int]:
    """(rows, groups per row) for n examples of three panels each: up to ``max_groups`` side by side."""
    groups = max(1, min(n, max_groups))
    return -(-n // groups), groups


def invariance_figure(x: torch.Tensor, labels: torch.Tensor, inv: Any, pool: torch.Tensor) -> Any:
    """The grid as a matplotlib Figure: per example (x, neighbour aligned to x, x*) side by side, with the
    original label, the neighbour's transform and the target; a title above every row, clear of the images."""
    from core.attacks.transforms import invert_transforms

    n = x.shape[0]
    neighbours = invert_transforms(pool[inv.neighbour_index.cpu()], inv.transform.cpu()).clamp(0, 1)
    rows, groups = grid_shape(n)
    fig, axes = plt.subplots(rows, 3 * groups, figsize=(1.45 * 3 * groups, 1.65 * rows + 0.5), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        tx, ty, deg = (float(v) for v in inv.transform[i])
        panels = [
            (x[i], f"x: label {int(labels[i])}"),
            (neighbours[i], f"n (aligned)\nt=({tx:+.1f},{ty:+.1f}) r={deg:+.0f}°"),
            (inv.x_star[i].cpu(), f"x*: target {int(inv.target[i])}"),
        ]
        row, group = divmod(i, groups)
        for ax, (img, title) in zip(axes[row, 3 * group: 3 * group + 3], panels, strict=True):
            ax.imshow(img.squeeze(0).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=7)
    fig.suptitle(f"invariance examples (L∞ ε={inv.eps}, {inv.mode}): x | neighbour n aligned to x | x*", fontsize=9)
    return fig


def invariance_grid(x: torch.Tensor, labels: torch.Tensor, inv: Any, pool: torch.Tensor, path: Path) -> Path:
    """Write the invariance grid (see invariance_figure) as a PNG; returns the file written."""
    return save_png(invariance_figure(x, labels, inv, pool), path, dpi=110)


CLASS_COLOURS = plt.get_cmap("tab10").colors  # ten qualitative colours, one per class
MARKERS = {"natural": "o", "FGSM-perturbed": "x"}


def pca_plot(natural: torch.Tensor, perturbed: torch.Tensor, labels: torch.Tensor, explained: torch.Tensor,
             title: str) -> Any:
    """Figure 1 as a matplotlib Figure: natural (dots) and perturbed (crosses) panels; the legend below them."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8), sharex=True, sharey=True, layout="constrained")
    for ax, points, name in ((axes[0], natural, "natural"), (axes[1], perturbed, "FGSM-perturbed")):
        for c in range(10):
            mask = labels == c
            ax.scatter(points[mask, 0], points[mask, 1], s=4, color=CLASS_COLOURS[c], label=f"class {c}",
                       alpha=0.7, marker=MARKERS[name], linewidths=0.6)
        ax.set_title(f"{name} test images ({MARKERS[name]})", fontsize=9)
        ax.set_xlabel(f"PC1 ({100 * float(explained[0]):.0f}% of natural variance)", fontsize=8)
    axes[0].set_ylabel(f"PC2 ({100 * float(explained[1]):.0f}%)", fontsize=8)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=10, markerscale=3,
               fontsize=7, handletextpad=0.2, columnspacing=0.9)
    fig.suptitle(title, fontsize=9)
    return fig


def pca_figure(natural: torch.Tensor, perturbed: torch.Tensor, labels: torch.Tensor, explained: torch.Tensor,
               title: str, path: Path) -> Path:
    """The paper's Figure 1 for one model: 2-D PCA of natural (dots) and FGSM-perturbed (crosses) embeddings."""
    return save_png(pca_plot(natural, perturbed, labels, explained, title), path, dpi=120)


def curves_figure(series: dict[str, list[list[dict[str, Any]]]], path: Path) -> Path:
    """curves.png: see curves_plot."""
    return save_png(curves_plot(series), path, dpi=110)


def curves_plot(series: dict[str, list[list[dict[str, Any]]]]) -> Any:
    """Training curves per variant (one thin line per seed): train loss, clean, FGSM and PGD monitor accuracy.

    FGSM and PGD side by side: FGSM accuracy holding while PGD accuracy falls is gradient masking.
    """
    keys = (("train_loss", "train loss"), ("monitor_A_orig", "clean acc % (monitor)"),
            ("monitor_A_SA", "FGSM acc % (monitor)"), ("monitor_A_PGD", "PGD acc % (monitor)"))
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    cmap = plt.get_cmap("tab10")
    for k, (variant, runs) in enumerate(series.items()):
        for i, history in enumerate(runs):
            epochs = [h["epoch"] for h in history]
            for ax, (key, _) in zip(axes, keys, strict=True):
                # markers: a run of one or two epochs is a point, which a bare line would not draw
                ax.plot(epochs, [h.get(key, float("nan")) for h in history], color=cmap(k), alpha=0.8, lw=1,
                        marker="o", ms=3, label=variant if i == 0 else None)
    shown = sorted({h["epoch"] for runs in series.values() for history in runs for h in history})
    for ax, (_, label) in zip(axes, keys, strict=True):
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_title(label, fontsize=9)
        if 0 < len(shown) <= 10:  # few epochs: a tick at each, and room around a single one
            ax.set_xticks(shown)
            ax.set_xlim(shown[0] - 0.5, shown[-1] + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def robustness_curve_figure(panels: dict[str, dict[str, list[list[tuple[float, float]]]]], path: Path, *,
                            title: str, eps_s: float | None = None) -> Path:
    """Accuracy vs ε: one panel per key of ``panels``, one line per label (the mean over its runs, with a
    ±1 sample-std band when there are several runs, e.g. seeds)."""
    import statistics

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 0.6, 3.4), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10")
    for ax, (panel, lines) in zip(axes[0], panels.items(), strict=True):
        for k, (label, runs) in enumerate(lines.items()):
            grid = sorted({e for run in runs for e, _ in run})
            values = [[v for v in (dict(run).get(e) for run in runs) if v is not None] for e in grid]
            mean = [statistics.fmean(vs) for vs in values]
            ax.plot(grid, mean, marker="o", ms=3, lw=1.3, color=cmap(k % 10),
                    label=f"{label} (n={len(runs)})" if len(runs) > 1 else label)
            if len(runs) > 1:
                std = [statistics.stdev(vs) if len(vs) > 1 else 0.0 for vs in values]
                ax.fill_between(grid, [m - s for m, s in zip(mean, std, strict=True)],
                                [m + s for m, s in zip(mean, std, strict=True)], color=cmap(k % 10), alpha=0.18)
        if eps_s is not None:
            ax.axvline(eps_s, color="gray", ls=":", lw=1)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("ε (L∞, pixel units)", fontsize=8)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("accuracy %", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi=120)
