"""A terminal line chart drawn with braille dots: y labels, an epoch axis and a legend."""

from __future__ import annotations

from rich.console import Group, RenderableType
from textual.widget import Widget

from amltui.termplot.line_chart import Series, render_chart

__all__ = ["LineChart", "Series", "render_chart"]


class LineChart(Widget):
    """Shows ``series`` against epochs; call ``plot`` to replace them."""

    DEFAULT_CSS = "LineChart { height: 1fr; min-height: 5; }"

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None,
                 x_name: str = "epoch", legend: bool = True, empty: str = "no data yet") -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.empty = empty  # what the chart says before it has points (best: how to get them)
        self.x_name = x_name
        self.legend = legend
        self.series: list[Series] = []
        self.x_max: float | None = None

    def plot(self, series: list[Series], x_max: float | None = None) -> None:
        if series != self.series or x_max != self.x_max:
            self.series, self.x_max = series, x_max
            self.refresh()

    def render(self) -> RenderableType:
        width, height = self.content_size
        return Group(*render_chart(self.title, self.series, width, height, self.x_max, empty=self.empty,
                                   x_name=self.x_name, legend=self.legend))
