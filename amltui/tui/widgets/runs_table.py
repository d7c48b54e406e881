"""The runs table: rows keyed by run id, updated cell by cell so the cursor and scroll stay put."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from amltui.tui.data import COLUMNS, FLAG_MARK, SORTS, STATUS_STYLE, RunRow, filter_rows, sort_rows


def _cell(column: str, value: str) -> str | Text:
    if column == "status":
        return Text(value, style=STATUS_STYLE.get(value, ""))
    if column == "progress":
        bar, _, count = value.partition(" ")
        return Text.assemble((bar, "cyan"), " ", count)
    if column == "A_SA" and value.endswith(FLAG_MARK):
        return Text.assemble(value[:-1], (FLAG_MARK, "bold yellow"), justify="right")
    if column in ("A_orig", "A_SA") and value.startswith("~"):
        return Text(value, style="dim", justify="right")  # a monitor estimate, not the final number
    if column in ("loss", "A_orig", "A_SA", "A_IA", "seed"):
        return Text(value, justify="right")
    if column == "id":
        return value  # a valid run id holds no markup; the table sorts by this plain string
    return Text(value)  # a str cell would be parsed as markup; run data is shown verbatim


class RunsTable(DataTable):
    """``show(rows)`` with every run; the filter and sort decide which rows appear and in what order."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_by_id: dict[str, RunRow] = {}
        self.shown: dict[str, dict[str, str]] = {}
        self.filter_text = ""
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
        self._sync()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._sync()

    def cycle_sort(self) -> str:
        self.sort_column = SORTS[(SORTS.index(self.sort_column) + 1) % len(SORTS)]
        self._sync()
        return self.sort_column

    def toggle_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._sync()

    def _sync(self) -> None:
        """Make the table show the filtered, sorted rows, touching only what changed."""
        wanted = sort_rows(filter_rows(list(self.rows_by_id.values()), self.filter_text), self.sort_column,
                           self.sort_reverse)
        keep = self.current_id
        id_width = min(max((len(r.key) for r in wanted), default=0), 48)
        if id_width > self.id_width:  # a longer id: rebuild once with a wider first column
            self.clear(columns=True)
            self.shown.clear()
            self._add_columns(id_width)
        wanted_ids = {r.key for r in wanted}
        for key in [k for k in self.shown if k not in wanted_ids]:
            self.remove_row(key)
            del self.shown[key]
        for row in wanted:
            old = self.shown.get(row.key)
            if old is None:
                self.add_row(*(_cell(c, row.cells[c]) for c, _, _ in COLUMNS), key=row.key)
                self.cells_written += len(COLUMNS)
            else:
                for column, _, _ in COLUMNS:
                    if old[column] != row.cells[column]:
                        self.update_cell(row.key, column, _cell(column, row.cells[column]))
                        self.cells_written += 1
            self.shown[row.key] = dict(row.cells)
        order = [r.key for r in wanted]
        if [r.key.value for r in self.ordered_rows] != order:
            rank = {key: i for i, key in enumerate(order)}
            self.sort("id", key=lambda run_id: rank[run_id])
        if keep in self.shown and self.get_row_index(keep) != self.cursor_row:
            self.move_cursor(row=self.get_row_index(keep), animate=False)
