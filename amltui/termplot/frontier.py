"""The sweep frontier (amltui/app/results/frontier.py) in the terminal: braille error bars, numbered points, the front.

Each point is drawn as its number (1-9, then a-z) at its seed mean, with braille error bars; the Pareto front is a
braille line; the legend under the plot gives each number's setting, mean ± half-width and n.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.text import Text

from amltui.app.results.frontier import (
    DEFAULT_X,
    DEFAULT_Y,
    INTERVAL_TEXT,
    Point,
    pareto_front,
    points_of,
    variant_colour,
)
from amltui.app.results.report import Row
from amltui.app.results.sweep_table import sweep_rows
from amltui.app.runs.sweeps import sweep_records
from amltui.termplot.braille import BrailleCanvas
from core.metrics import METRIC_LABELS

Y_LABEL = 7
FRONT_STYLE = "grey50"
MARKS = "123456789abcdefghijklmnopqrstuvwxyz"


def _bounds(points: list[Point]) -> tuple[float, float, float, float]:
    xs = [v for p in points for v in (p.x - (p.x_err or 0), p.x + (p.x_err or 0))]
    ys = [v for p in points for v in (p.y - (p.y_err or 0), p.y + (p.y_err or 0))]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad_x, pad_y = max((x1 - x0) * 0.05, 0.5), max((y1 - y0) * 0.05, 0.5)
    return x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y


def _legend(points: list[Point], x: str, y: str, interval: str) -> list[Text]:
    front = {p.label for p in pareto_front(points)}
    lines = [Text(f"{INTERVAL_TEXT[interval]}; ★ the paper's variant; ◆ on the Pareto front", style="dim")]
    for i, p in enumerate(points):
        line = Text(f"{MARKS[i % len(MARKS)]} ", style=f"bold {variant_colour(p.variant)}")
        xe = "" if p.x_err is None else f" ± {p.x_err:.2f}"
        ye = "" if p.y_err is None else f" ± {p.y_err:.2f}"
        line.append(f"{p.label}: {METRIC_LABELS[x]} {p.x:.2f}{xe}, {METRIC_LABELS[y]} {p.y:.2f}{ye} (n={p.n})")
        line.append((" ★" if p.paper else "") + (" ◆" if p.label in front else ""))
        lines.append(line)
    return lines


def render_frontier(points: list[Point], x: str, y: str, interval: str = "std", width: int = 78,
                    height: int = 16) -> list[Text]:
    """The plot as lines of text (pure: tested without an app); legend lines follow the plot."""
    head = Text(f"{METRIC_LABELS[y]} (%) ↑  vs  {METRIC_LABELS[x]} (%) →", style="bold")
    if not points:
        return [head, Text("no grid point has both metrics yet", style="dim")]
    plot_w, plot_h = max(width - Y_LABEL, 10), max(height - 2, 4)
    canvas = BrailleCanvas(plot_w, plot_h)
    dots_w, dots_h = canvas.dot_size
    x0, x1, y0, y1 = _bounds(points)

    def dot(vx: float, vy: float) -> tuple[int, int]:
        return round((vx - x0) / (x1 - x0) * (dots_w - 1)), round((y1 - vy) / (y1 - y0) * (dots_h - 1))

    front = pareto_front(points)
    for a, b in zip(front, front[1:], strict=False):
        canvas.line(*dot(a.x, a.y), *dot(b.x, b.y), style=FRONT_STYLE)
    marks: dict[tuple[int, int], tuple[str, str]] = {}
    for i, p in enumerate(points):
        style = variant_colour(p.variant)
        if p.x_err:
            canvas.line(*dot(p.x - p.x_err, p.y), *dot(p.x + p.x_err, p.y), style=style)
        if p.y_err:
            canvas.line(*dot(p.x, p.y - p.y_err), *dot(p.x, p.y + p.y_err), style=style)
        cx, cy = dot(p.x, p.y)
        marks[(cy // 4, cx // 2)] = (MARKS[i % len(MARKS)], f"bold {style}" + (" reverse" if p.paper else ""))
    lines = [head]
    for r, row in enumerate(canvas.rows()):
        label = f"{y1:.4g}" if r == 0 else f"{y0:.4g}" if r == plot_h - 1 else ""
        text = Text((label.rjust(Y_LABEL - 1) + ("┤" if label else "│"))[-Y_LABEL:], style="dim")
        for c, cell in enumerate(row.divide(range(1, len(row)))):  # one Text per cell, styles kept
            text.append_text(Text(*marks[(r, c)]) if (r, c) in marks else cell)
        lines.append(text)
    left, right = f"{x0:.4g}", f"{x1:.4g}"
    lines.append(Text(" " * Y_LABEL + left + " " * max(plot_w - len(left) - len(right), 1) + right, style="dim"))
    return lines + _legend(points, x, y, interval)


def frontier_renderable(points: list[Point], x: str, y: str, interval: str = "std", width: int = 78,
                        height: int = 16) -> Group:
    return Group(*render_frontier(points, x, y, interval, width, height))


def sweep_view(records: list[dict], runs_dir: Path, name: str, x: str = DEFAULT_X, y: str = DEFAULT_Y,
               width: int = 78) -> tuple[list[Row], Group]:
    """The dashboard's results screen for one sweep: its table rows and its frontier (or why there is none)."""
    chosen, keys = sweep_records(records, runs_dir, name)
    rows = sweep_rows(chosen, keys)
    points = points_of(rows, x, y)
    if not points and y == DEFAULT_Y:  # runs without invariance sets (eval_ia off): show A_SA instead
        y, points = "A_SA", points_of(rows, x, "A_SA")
    return rows, frontier_renderable(points, x, y, width=width)
