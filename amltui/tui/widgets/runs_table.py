"""The runs table: rows keyed by run id, updated cell by cell so the cursor and scroll stay put.

The marker and id columns are frozen (they stay when the table scrolls sideways); ``End``/``Home`` jump to the last
and first row. Runs marked with space (``toggle_mark``) are what the bulk actions and the compare view act on.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from amltui.app.runs.outcomes import CHANCE_MARK
from amltui.app.runs.view import FLAG_MARK, SORTS, FilterSyntaxError, ProgressCell, RunRow, filter_rows, sort_rows
from amltui.app.safetext import printable
from amltui.tui.data import COLUMNS, FROZEN, MARK, NUMERIC, POINT_COLUMN, STATUS_STYLE

ID_WIDTH_MAX = 32  # a longer id is cut: the metrics after it must stay in view at 80 columns
POINT_WIDTH_MAX = 24  # a longer grid point is cut with "…" (the detail screen's config tab has it whole)
PROGRESS_WIDTH_MIN = len("████████ 0/0")


@dataclass(frozen=True)
class Layout:
    """What decides the columns: the widths that follow the content, and whether the grid point shows."""

    id_width: int = 12
    progress_width: int = PROGRESS_WIDTH_MIN
    point_width: int = 0  # 0: no shown run belongs to a sweep, no point column

    @property
    def columns(self) -> list[tuple[str, str, int]]:
        widths = {"id": self.id_width, "progress": self.progress_width, "point": self.point_width}
        columns = list(COLUMNS)
        if self.point_width:
            columns.insert(next(i for i, c in enumerate(columns) if c[0] == "status") + 1, POINT_COLUMN)
        return [(key, label, width or widths[key]) for key, label, width in columns]

    def holds(self, other: Layout) -> bool:
        """Every cell of ``other`` fits this layout (a wider column is kept: no rebuild each time a row goes)."""
        return (self.id_width >= other.id_width and self.progress_width >= other.progress_width
                and bool(self.point_width) == bool(other.point_width) and self.point_width >= other.point_width)


def layout_for(cells: list[dict[str, str]]) -> Layout:
    """The narrowest layout in which no cell of these rows is cut (an id or grid point past its cap aside)."""
    def widest(column: str) -> int:
        return max((len(c[column]) for c in cells), default=0)

    return Layout(min(max(widest("id"), 12), ID_WIDTH_MAX), max(widest("progress"), PROGRESS_WIDTH_MIN),
                  min(widest("point"), POINT_WIDTH_MAX))


def _progress(cell: ProgressCell) -> Text:
    """The bar in colour, then the count (both from the run's phase events: amltui/app/runs/view.py)."""
    return Text.assemble((cell.bar, "cyan"), " ", cell.count)


def _cell(column: str, value: str, row: RunRow) -> str | Text:
    if column == "status":
        return Text(value, style=STATUS_STYLE.get(value, ""))
    if column == "mark":
        return Text(value, style="bold yellow")
    if column == "progress":
        return _progress(row.progress)
    if column == "A_SA" and value.endswith(FLAG_MARK):
        return Text.assemble(value[:-1], (FLAG_MARK, "bold yellow"), justify="right")
    if column == "A_orig" and value.endswith(CHANCE_MARK):
        return Text.assemble(value[:-1], (CHANCE_MARK, "bold red"), justify="right")
    if column == "flags" and value:
        return Text(value, style="yellow")
    if column in NUMERIC and value.startswith("~"):
        return Text(value, style="dim", justify="right")  # a monitor estimate, not the final number
    if column in NUMERIC:
        return Text(value, justify="right")
    if column == "point" and len(value) > POINT_WIDTH_MAX:
        return Text(value[: POINT_WIDTH_MAX - 1] + "…")
    if column == "id":
        return value  # a valid run id holds no markup; the table sorts by this plain string
    return Text(printable(value))  # not a str: that would be parsed as markup; run data is shown verbatim


class RunsTable(DataTable):
    """``show(rows)`` with every run; the filter and sort decide which rows appear and in what order."""

    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
        # DataTable's own keys, bound here again so that the help screen lists them (a row cursor scrolls)
        Binding("left", "cursor_left", "Scroll the columns left (the id stays)", show=False),
        Binding("right", "cursor_right", "Scroll the columns right (the id stays)", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, fixed_columns=FROZEN, **kwargs)
        self.rows_by_id: dict[str, RunRow] = {}
        self.shown: dict[str, dict[str, str]] = {}
        self.marked: list[str] = []  # in the order they were marked
        self.filter_text = ""
        self.filter_error: str | None = None  # the filter's last text had a bad key: the table keeps the one before
        self._applied_filter = ""
        self.sort_column = "created"
        self.sort_reverse = False
        self.cells_written = 0  # cells (re)written since mount: a measure of update work

    def on_mount(self) -> None:
        self._add_columns(Layout())

    def _add_columns(self, layout: Layout) -> None:
        # Every width is fixed: auto-width columns re-measure on idle and can leave a stale row drawn. The widths
        # that follow the content (id, progress, point) are set from the rows: Layout.
        self.columns_layout = layout
        self.column_keys = [key for key, _, _ in layout.columns]
        for key, label, width in layout.columns:
            self.add_column(label, key=key, width=width)

    @property
    def id_width(self) -> int:
        return self.columns_layout.id_width

    @property
    def current_id(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def show(self, rows: list[RunRow]) -> None:
        self.rows_by_id = {r.key: r for r in rows}
        self.marked = [run_id for run_id in self.marked if run_id in self.rows_by_id]  # deleted runs unmark
        self._sync()

    def set_filter(self, text: str) -> None:
        """Filter by ``text`` (the one filter grammar, amltui/app/runs/filters.py); a bad key or value sets
        ``filter_error`` instead."""
        self.filter_text = text
        self._sync()

    def set_sort(self, column: str) -> None:
        if column not in SORTS:
            raise ValueError(f"unknown sort key {column!r}; valid: {', '.join(SORTS)}")
        self.sort_column = column
        self._sync()

    def toggle_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._sync()

    def toggle_mark(self) -> str | None:
        """Mark or unmark the run under the cursor; the run id, or None when the table is empty."""
        run_id = self.current_id
        if run_id is None:
            return None
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self._sync()
        return run_id

    def clear_marks(self) -> None:
        self.marked = []
        self._sync()

    def _cells(self, row: RunRow) -> dict[str, str]:
        return {**row.cells, "mark": MARK if row.key in self.marked else ""}

    def _wanted(self) -> list[RunRow]:
        rows = list(self.rows_by_id.values())
        try:
            shown = filter_rows(rows, self.filter_text)
            self._applied_filter, self.filter_error = self.filter_text, None
        except FilterSyntaxError as exc:
            self.filter_error = str(exc)
            shown = filter_rows(rows, self._applied_filter)
        return sort_rows(shown, self.sort_column, self.sort_reverse)

    def _sync(self) -> None:
        """Make the table show the filtered, sorted rows, touching only what changed."""
        wanted = self._wanted()
        keep = self.current_id
        needed = layout_for([self._cells(r) for r in wanted])
        if not self.columns_layout.holds(needed):  # a longer id or count, or a sweep came or went: rebuild once
            self.clear(columns=True)
            self.shown.clear()
            old = self.columns_layout
            self._add_columns(Layout(max(needed.id_width, old.id_width),
                                     max(needed.progress_width, old.progress_width), needed.point_width))
        wanted_ids = {r.key for r in wanted}
        for key in [k for k in self.shown if k not in wanted_ids]:
            self.remove_row(key)
            del self.shown[key]
        for row in wanted:
            cells, old = self._cells(row), self.shown.get(row.key)
            if old is None:
                self.add_row(*(_cell(c, cells[c], row) for c in self.column_keys), key=row.key)
                self.cells_written += len(self.column_keys)
            else:
                for column in self.column_keys:
                    if old[column] != cells[column]:
                        self.update_cell(row.key, column, _cell(column, cells[column], row))
                        self.cells_written += 1
            self.shown[row.key] = cells
        self._order([r.key for r in wanted], keep)

    def _order(self, order: list[str], keep: str | None) -> None:
        if [r.key.value for r in self.ordered_rows] != order:
            rank = {key: i for i, key in enumerate(order)}
            self.sort("id", key=lambda run_id: rank[run_id])
        if keep in self.shown and self.get_row_index(keep) != self.cursor_row:
            self.move_cursor(row=self.get_row_index(keep), animate=False)
