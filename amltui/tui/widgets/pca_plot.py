"""The paper's Figure 1 in the terminal: 2-D PCA of natural and FGSM-perturbed embeddings, side by side."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widget import Widget

from amltui.termplot.braille import BrailleCanvas

# One colour per class (the order of matplotlib's tab10, as in the PNG).
CLASS_STYLES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")


def render_pca(data: dict[str, Any], width: int = 78, height: int = 14) -> Group:
    """Two braille scatter plots with shared axes (natural | FGSM); each dot coloured by its class."""
    natural, perturbed, labels = data["natural"], data["perturbed"], data["labels"]
    points = natural + perturbed
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    panel = max(10, (width - 3) // 2)
    canvases = []
    for cloud in (natural, perturbed):
        canvas = BrailleCanvas(panel, height)
        w, h = canvas.dot_size
        for (x, y), label in zip(cloud, labels, strict=False):
            col = round((x - x0) / ((x1 - x0) or 1) * (w - 1))
            row = round((y1 - y) / ((y1 - y0) or 1) * (h - 1))  # y grows downwards on the canvas
            canvas.set(col, row, CLASS_STYLES[int(label) % 10])
        canvases.append(canvas.rows())
    explained = data.get("explained") or [float("nan"), float("nan")]
    head = Text(f"{'natural test images':<{panel}} │ FGSM-perturbed (same axes)", style="bold")
    lines = [head]
    for left, right in zip(*canvases, strict=True):
        lines.append(Text.assemble(left, " │ ", right))
    legend = Text("class: ")
    for c, style in enumerate(CLASS_STYLES):
        legend.append(f"● {c} ", style=style)
    lines.append(legend)
    lines.append(Text(f"PC1 {100 * explained[0]:.0f}% · PC2 {100 * explained[1]:.0f}% of the natural variance · "
                      f"{len(natural)} images", style="dim"))
    return Group(*lines)


class PcaView(Widget):
    """The detail screen's PCA area: the scatter drawn to the widget's own size, or a message in its place."""

    DEFAULT_CSS = "PcaView { height: 1fr; }"
    ROWS_AROUND = 3  # the panels' heading, the class legend and the PC line

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data: dict[str, Any] | None = None
        self.message: RenderableType = ""

    def show(self, content: dict[str, Any] | RenderableType) -> None:
        """A pca.json's content (drawn at the current size, again after each resize) or a message."""
        self.data, self.message = (content, "") if isinstance(content, dict) else (None, content)
        self.refresh()

    def render(self) -> RenderableType:
        if self.data is None:
            return self.message
        width, height = self.content_size
        return render_pca(self.data, width=max(width, 23), height=max(height - self.ROWS_AROUND, 4))
