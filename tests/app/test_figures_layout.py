"""Figures read well (amltui/app/results/png_figures.py): a grid of invariance examples under a clear title, the
PCA legend outside the axes with ten distinct class colours, integer epoch ticks on curves.png."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.colors import to_rgb
from PIL import Image

from amltui.app.results.png_figures import (
    curves_figure,
    curves_plot,
    grid_shape,
    invariance_figure,
    invariance_grid,
    pca_figure,
    pca_plot,
)


def _inv(n: int) -> SimpleNamespace:
    gen = torch.Generator().manual_seed(0)
    return SimpleNamespace(neighbour_index=torch.arange(n), transform=torch.zeros(n, 3), eps=0.3, mode="fast",
                           x_star=torch.rand(n, 1, 28, 28, generator=gen), target=torch.arange(n) % 10)


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.slow
def test_invariance_examples_form_a_grid_under_a_title_clear_of_the_images(tmp_path: Path) -> None:
    n = 12
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    fig = invariance_figure(x, torch.arange(n) % 10, _inv(n), x)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    rows, groups = grid_shape(n)
    assert (rows, groups) == (3, 4) and len(fig.axes) == rows * 3 * groups
    title = fig._suptitle.get_window_extent(renderer)
    first_row = fig.axes[: 3 * groups]
    for ax in first_row:  # neither the images nor their own titles run into the figure's title
        assert not _boxes_overlap(title, ax.get_window_extent(renderer))
        assert not _boxes_overlap(title, ax.title.get_window_extent(renderer))
    plt.close(fig)
    path = invariance_grid(x, torch.arange(n) % 10, _inv(n), x, tmp_path / "inv")
    width, height = Image.open(path).size
    assert path.name == "inv.png" and width > height  # a grid wider than tall, not a 462×1914 strip
    assert width < 2200 and height < 900


def test_few_examples_keep_one_row() -> None:
    assert grid_shape(1) == (1, 1) and grid_shape(3) == (1, 3) and grid_shape(5) == (2, 4)


@pytest.mark.slow
def test_pca_legend_is_outside_the_axes_with_ten_distinct_colours(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    natural, perturbed = torch.randn(500, 2, generator=gen), torch.randn(500, 2, generator=gen)
    labels = torch.arange(500) % 10
    fig = pca_plot(natural, perturbed, labels, torch.tensor([0.4, 0.2]), "run: ml_sa")
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    legend = fig.legends[0]
    box = legend.get_window_extent(renderer)
    assert all(not _boxes_overlap(box, ax.get_window_extent(renderer)) for ax in fig.axes)
    assert box.y1 <= min(ax.get_window_extent(renderer).y0 for ax in fig.axes)  # below the panels
    colours = {tuple(round(v, 3) for v in to_rgb(h.get_facecolor()[0])) for h in legend.legend_handles}
    assert len(colours) == 10
    markers = {ax.title.get_text(): {c.get_paths()[0].vertices.shape for c in ax.collections} for ax in fig.axes}
    assert len({next(iter(v)) for v in markers.values()}) == 2  # dots on one panel, crosses on the other
    plt.close(fig)
    path = pca_figure(natural, perturbed, labels, torch.tensor([0.4, 0.2]), "t", tmp_path / "pca.png")
    assert Image.open(path).size == (1080, 576)


@pytest.mark.slow
def test_curves_have_integer_epoch_ticks(tmp_path: Path) -> None:
    history = [{"epoch": e, "train_loss": 1 / e, "monitor_A_orig": 90 + e, "monitor_A_SA": 50 + e,
                "monitor_A_PGD": 30 + e} for e in (1, 2, 3)]
    fig = curves_plot({"baseline": [history], "ml_sa": [history]})
    fig.canvas.draw()
    for ax in fig.axes[:4]:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    plt.close(fig)
    assert Image.open(curves_figure({"baseline": [history]}, tmp_path / "curves.png")).size == (1540, 374)


def test_curves_of_a_one_epoch_run_are_readable(tmp_path: Path) -> None:
    """A 1-epoch reproduce: each run is one point, drawn with a marker, under a single tick "1" (not the
    overprinted 0.945 0.960 … of an autoscaled axis)."""
    one = [{"epoch": 1, "train_loss": 2.3, "monitor_A_orig": 10.0, "monitor_A_SA": 9.0, "monitor_A_PGD": 8.0}]
    fig = curves_plot({"baseline": [one, one], "ml_sa": [one]})
    fig.canvas.draw()
    for ax in fig.axes:
        lines = ax.get_lines()
        assert lines and all(line.get_marker() not in (None, "", "None", " ") for line in lines)
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        assert labels == ["1"], labels
        low, high = ax.get_xlim()
        assert low < 1 < high and high - low >= 1
    plt.close(fig)
    assert curves_figure({"baseline": [one]}, tmp_path / "curves.png").stat().st_size > 0
