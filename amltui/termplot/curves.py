"""curve.json in the terminal: a braille chart (the dashboard's and `amltui eval --curve`'s) and a table."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from amltui.app.results.curves import curve_points
from amltui.termplot.line_chart import Series, render_chart

CURVE_STYLES = ("cyan", "red", "yellow", "magenta", "green")


def curve_chart(data: dict[str, Any], width: int = 72, height: int = 16) -> list[Any]:
    """The curve of curve.json as braille lines (the dashboard's chart), x = ε."""
    series = [Series(data["labels"].get(a, a), curve_points(data, a), CURVE_STYLES[i % len(CURVE_STYLES)])
              for i, a in enumerate(data["curves"])]
    return render_chart(f"accuracy % vs ε (n={data.get('n')})", series, width, height, x_name="ε")


def curve_table(data: dict[str, Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=f"accuracy % vs ε on {data.get('n')} test images")
    table.add_column("ε", justify="right")
    for a in data["curves"]:
        table.add_column(data["labels"].get(a, a), justify="right")
    for i, e in enumerate(data["grid"]):
        table.add_row(f"{e:g}", *("–" if accs[i] is None else f"{accs[i]:.2f}" for accs in data["curves"].values()))
    return table
