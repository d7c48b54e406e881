"""The runs table: rows keyed by run id, updated cell by cell so the cursor and scroll stay put.

The marker and id columns are frozen (they stay when the table scrolls sideways); ``End``/``Home`` jump to the last
and first row. Runs marked with space (``toggle_mark``) are what the bulk actions and the compare view act on.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from amltui.app.safetext import printable
from amltui.tui.data import (
    COLUMNS,
    FLAG_MARK,
    FROZEN,
    MARK,
    NUMERIC,
    SORTS,
    STATUS_STYLE,
    FilterSyntaxError,
    RunRow,
    filter_rows,
    sort_rows,
)

ID_WIDTH_MAX = 32  # a longer id is cut: the metrics after it must stay in view at 80 columns


def _cell(column: str, value: str) -> str | Text:
    if column == "status":
        return Text(value, style=STATUS_STYLE.get(value, ""))
    if column == "mark":
        return Text(value, style="bold yellow")
    if column == "progress":
        bar, _, count = value.partition(" ")
        return Text.assemble((bar, "cyan"), " ", count)
    if column == "A_SA" and value.endswith(FLAG_MARK):
        return Text.assemble(value[:-1], (FLAG_MARK, "bold yellow"), justify="right")
    if column == "flags" and value:
        return Text(value, style="yellow")
    if column in NUMERIC and value.startswith("~"):
        return Text(value, style="dim", justify="right")  # a monitor estimate, not the final number
    if column in NUMERIC:
        return Text(value, justify="right")
    if column == "id":
        return value  # a valid run id holds no markup; the table sorts by this plain string
    return Text(printable(value))  # not a str: that would be parsed as markup; run data is shown verbatim


class RunsTable(DataTable):
    """``show(rows)`` with every run; the filter and sort decide which rows appear and in what order."""

    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
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
        self._add_columns(12)

    def _add_columns(self, id_width: int) -> None:
        # Every width is fixed: auto-width columns re-measure on idle and can leave a stale row drawn.
        self.id_width = id_width
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width or id_width)

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
        """Filter by ``text`` (amltui.tui.data.parse_filter); a bad key sets ``filter_error`` instead."""
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
        id_width = min(max((len(r.key) for r in wanted), default=0), ID_WIDTH_MAX)
        if id_width > self.id_width:  # a longer id: rebuild once with a wider first column
            self.clear(columns=True)
            self.shown.clear()
            self._add_columns(id_width)
        wanted_ids = {r.key for r in wanted}
        for key in [k for k in self.shown if k not in wanted_ids]:
            self.remove_row(key)
            del self.shown[key]
        for row in wanted:
            cells, old = self._cells(row), self.shown.get(row.key)
            if old is None:
                self.add_row(*(_cell(c, cells[c]) for c, _, _ in COLUMNS), key=row.key)
                self.cells_written += len(COLUMNS)
            else:
                for column, _, _ in COLUMNS:
                    if old[column] != cells[column]:
                        self.update_cell(row.key, column, _cell(column, cells[column]))
                        self.cells_written += 1
            self.shown[row.key] = cells
        self._order([r.key for r in wanted], keep)

    def _order(self, order: list[str], keep: str | None) -> None:
        if [r.key.value for r in self.ordered_rows] != order:
            rank = {key: i for i, key in enumerate(order)}
            self.sort("id", key=lambda run_id: rank[run_id])
        if keep in self.shown and self.get_row_index(keep) != self.cursor_row:
            self.move_cursor(row=self.get_row_index(keep), animate=False)
