"""The sensitivity–invariance frontier of a sweep: each grid point at its seed mean, with error bars.

x and y are any two metrics (default: A_PGD, robustness to sensitivity attacks, against A_IA, robustness to
invariance attacks; both are accuracies, higher is better). A point is on the Pareto front when no other point is
at least as good on both axes and better on one. Error bars are ±1 sample std over seeds (``std``) or the 95%
Student-t interval of the seed mean (``ci95``); a point from a single seed has no bar (no spread is measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amltui.app.results.report import Cell, Row, t_quantile
from amltui.app.results.sweep_table import sweep_rows
from amltui.app.runs.sweeps import manifest_path, sweep_records, swept_keys
from core.metrics import METRIC_LABELS, METRIC_ORDER

INTERVALS = ("std", "ci95")
INTERVAL_TEXT = {"std": "error bars: ±1 sample std over seeds",
                 "ci95": "error bars: 95% t-interval of the seed mean"}
DEFAULT_X, DEFAULT_Y = "A_PGD", "A_IA"
# Label positions (typographic points from the marker), cycled; a thin leader line ties each label to its point.
LABEL_OFFSETS = ((14, 16), (14, -18), (-14, 16), (-14, -18), (0, 24), (0, -26))
# Each variant's colour in every frontier, the PNG (matplotlib) and the terminal's (Rich takes the same hex).
VARIANT_COLOURS = {"baseline": "#7f7f7f", "ml_sa": "#1f77b4", "ml_sa_ia": "#d62728"}
OTHER_VARIANT_COLOUR = "#2ca02c"  # a variant added to core/registry.py without a colour here


def variant_colour(variant: str) -> str:
    """The colour a variant's points and bars are drawn in (hex, for matplotlib and Rich alike)."""
    return VARIANT_COLOURS.get(variant, OTHER_VARIANT_COLOUR)


class FrontierError(ValueError):
    """Metrics or interval the frontier cannot use; the message names the valid ones."""


@dataclass(frozen=True)
class Point:
    label: str  # the grid point and variant, e.g. "ml_sa_ia lambda_ia=0.25"
    variant: str
    x: float
    y: float
    x_err: float | None  # half-width of the bar; None: a single seed
    y_err: float | None
    n: int  # seeds behind the point (the smaller of the two metrics' n)
    paper: bool  # the paper's own variant (its default weights)


def half_width(cell: Cell, interval: str = "std") -> float | None:
    if cell.std is None:
        return None
    if interval == "std":
        return cell.std

    return t_quantile(cell.n - 1) * cell.std / math.sqrt(cell.n)


def check_metrics(x: str, y: str, interval: str = "std") -> None:
    for option, metric in (("--x", x), ("--y", y)):
        if metric not in METRIC_ORDER:
            raise FrontierError(f"{option} {metric!r} is not a metric; choose one of: {', '.join(METRIC_ORDER)}")
    if x == y:
        raise FrontierError(f"--x and --y are both {x}; choose two different metrics")
    if interval not in INTERVALS:
        raise FrontierError(f"--interval {interval!r}: choose std or ci95")


def points_of(rows: list[Row], x: str = DEFAULT_X, y: str = DEFAULT_Y, interval: str = "std") -> list[Point]:
    """One point per row that has both metrics (rows from amltui/app/results/sweep_table.py: settings name the
    point)."""
    check_metrics(x, y, interval)
    out = []
    for row in rows:
        cx, cy = row.cells[x], row.cells[y]
        if not cx.values or not cy.values:
            continue
        setting = row.setting.replace(f"(paper's {row.variant})", "").strip(" -")
        out.append(Point(f"{row.variant} {setting}".strip(), row.variant, cx.mean, cy.mean, half_width(cx, interval),
                         half_width(cy, interval), min(cx.n, cy.n), "(paper's " in row.setting))
    return out


def pareto_front(points: list[Point]) -> list[Point]:
    """The points no other point dominates (both metrics higher = better), by increasing x."""
    def dominated(p: Point) -> bool:
        return any(q.x >= p.x and q.y >= p.y and (q.x > p.x or q.y > p.y) for q in points)

    return sorted((p for p in points if not dominated(p)), key=lambda p: (p.x, -p.y))


def caption(points: list[Point], interval: str) -> str:
    ns = sorted({p.n for p in points})
    n_text = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return (f"Each point: the mean over seeds (n = {n_text} per point); {INTERVAL_TEXT[interval]}; "
            "★ the paper's variants; ringed and joined: the Pareto front (higher is better on both axes).")


def frontier_figure(points: list[Point], x: str = DEFAULT_X, y: str = DEFAULT_Y, interval: str = "std",
                    title: str = "Sensitivity–invariance frontier") -> Any:
    """The matplotlib figure (one errorbar container per point, in ``points`` order; the front as a line)."""
    from amltui.app.results.png_figures import plt  # Agg backend, set once there

    fig, ax = plt.subplots(figsize=(7.5, 5.6))
    seen: set[str] = set()
    for p in points:
        label = p.variant if p.variant not in seen else None
        seen.add(p.variant)
        ax.errorbar([p.x], [p.y], xerr=None if p.x_err is None else [p.x_err],
                    yerr=None if p.y_err is None else [p.y_err], fmt="o", capsize=3,
                    color=variant_colour(p.variant), label=label, gid=f"point:{p.label}")
    _label_points(ax, points)
    front = pareto_front(points)
    ax.plot([p.x for p in front], [p.y for p in front], "-o", color="black", alpha=0.5, lw=1.2, ms=15,
            markerfacecolor="none", label="Pareto front", gid="pareto-front")
    paper = [p for p in points if p.paper]
    if paper:
        ax.scatter([p.x for p in paper], [p.y for p in paper], marker="*", s=260, facecolors="none",
                   edgecolors="black", label="paper's variant", gid="paper-variants", zorder=3)
    ax.set_xlabel(f"{METRIC_LABELS[x]} (%)")
    ax.set_ylabel(f"{METRIC_LABELS[y]} (%)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=INTERVAL_TEXT[interval], title_fontsize=8, loc="best")
    if points:
        fig.text(0.01, 0.01, caption(points, interval), fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _label_points(ax: Any, points: list[Point]) -> None:
    """Each point's setting, placed at the candidate offset farthest from the other points and labels."""
    scale = ax.figure.dpi / 72  # offsets are in typographic points
    taken = [tuple(ax.transData.transform((p.x, p.y))) for p in points]
    for p, (px, py) in zip(points, list(taken), strict=True):
        def clearance(offset: tuple[int, int], px: float = px, py: float = py) -> float:
            lx, ly = px + offset[0] * scale * 2.5, py + offset[1] * scale  # a label reaches right/left of its end
            return min((math.hypot(lx - tx, ly - ty) for tx, ty in taken if (tx, ty) != (px, py)), default=1e9)

        offset = max(LABEL_OFFSETS, key=clearance)
        taken.append((px + offset[0] * scale * 2.5, py + offset[1] * scale))
        ax.annotate(p.label.removeprefix(p.variant).strip() or p.variant, (p.x, p.y), textcoords="offset points",
                    xytext=offset, fontsize=8, ha="left" if offset[0] > 0 else "right" if offset[0] < 0 else "center",
                    va="center",
                    arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.45"})


def write_png(fig: Any, path: Path) -> Path:
    from amltui.app.results.png_figures import write_figure

    return write_figure(fig, path, dpi=120)  # atomically; a symbolic link where the PNG goes is refused


def frontier_png(records: list[dict[str, Any]], path: Path, x: str = DEFAULT_X, y: str = DEFAULT_Y,
                 keys: list[str] | None = None, interval: str = "std",
                 title: str = "Sensitivity–invariance frontier") -> Path | None:
    """The frontier of any finished runs as a PNG; None without a point. ``keys``: the settings that label the
    points [default: every config key that differs between the runs]; `reproduce` passes [] (its three variants
    are told apart by name)."""
    rows = sweep_rows(records, keys if keys is not None else swept_keys(records))
    points = points_of(rows, x, y, interval)
    if not points:
        return None
    return write_png(frontier_figure(points, x, y, interval, title), path)


def plot_sweep(records: list[dict[str, Any]], runs_dir: Path, name: str | None, x: str = DEFAULT_X,
               y: str = DEFAULT_Y, interval: str = "std", out: Path | None = None) -> tuple[list[Point], Path]:
    """`plot --sweep NAME`: the sweep's points and its PNG [default: <runs>/reports/sweeps/NAME-X-Y.png]."""
    if not name:
        raise FrontierError("give a run id (its PCA figure or --curve), or --sweep NAME (a sweep's frontier)")
    check_metrics(x, y, interval)
    chosen, keys = sweep_records(records, runs_dir, name)
    points = points_of(sweep_rows(chosen, keys), x, y, interval)
    if not points:
        raise FrontierError(f"sweep {name!r} has no finished run with both {x} and {y} yet "
                            f"({len(chosen)} run(s); `amltui export --where sweep={name} --with-runs` lists them)")
    path = Path(out) if out else manifest_path(runs_dir, name).with_name(f"{name}-{x}-{y}.png")
    title = f"Sweep {name}: {METRIC_LABELS[y]} vs {METRIC_LABELS[x]}"
    return points, write_png(frontier_figure(points, x, y, interval, title), path)
