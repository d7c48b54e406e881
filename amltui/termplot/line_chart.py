"""A terminal line chart drawn with braille dots: y labels, an epoch axis and a legend (Rich text)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text

from amltui.termplot.braille import BrailleCanvas

Y_LABEL = 7  # characters of the y-axis labels


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]  # (x, y)
    style: str


def _finite(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def _label(value: float) -> str:
    text = f"{value:.4g}" if abs(value) < 1000 else f"{value:.3g}"
    return text.rjust(Y_LABEL - 1)[: Y_LABEL - 1] + "┤"


def render_chart(title: str, series: list[Series], width: int, height: int, x_max: float | None = None,
                 empty: str = "no data yet", x_name: str = "epoch", legend: bool = True) -> list[Text]:
    """The chart as ``height`` lines of ``width`` cells (pure: tested without an app).

    ``legend=False``: the title line names no series (a legend of its own is shown elsewhere, e.g. long run ids).
    """
    head = Text(title, style="bold")
    for s in series if legend else []:
        head.append("  ━ ", style=s.style)
        head.append(s.label)
    head.truncate(width)
    lines = [head]
    plot_w, plot_h = width - Y_LABEL, height - 2
    points = [p for s in series for p in _finite(s.points)]
    if plot_w < 4 or plot_h < 1 or not points:
        lines += [Text(empty, style="dim")] + [Text("")] * max(height - 2, 0)
        return lines[:height]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(xs), max(max(xs), x_max or 0)
    y_lo, y_hi = min(ys), max(ys)
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    canvas = BrailleCanvas(plot_w, plot_h)
    dots_w, dots_h = canvas.dot_size

    def to_dot(x: float, y: float) -> tuple[int, int]:
        dx = 0 if x_hi == x_lo else round((x - x_lo) / (x_hi - x_lo) * (dots_w - 1))
        return dx, round((y_hi - y) / (y_hi - y_lo) * (dots_h - 1))

    for s in series:
        dots = [to_dot(x, y) for x, y in _finite(s.points)]
        for a, b in zip(dots, dots[1:], strict=False):
            canvas.line(*a, *b, style=s.style)
        if len(dots) == 1:
            canvas.set(*dots[0], style=s.style)
    mid = (y_lo + y_hi) / 2
    for i, row in enumerate(canvas.rows()):
        if i == 0:
            label = _label(y_hi)
        elif i == plot_h - 1:
            label = _label(y_lo)
        elif i == plot_h // 2 and plot_h > 4:
            label = _label(mid)
        else:
            label = " " * (Y_LABEL - 1) + "│"
        lines.append(Text(label, style="dim") + row)
    left, right = f"{x_lo:g}", f"{x_name} {x_hi:g}"
    lines.append(Text(" " * Y_LABEL + left + " " * max(plot_w - len(left) - len(right), 1) + right, style="dim"))
    return lines
