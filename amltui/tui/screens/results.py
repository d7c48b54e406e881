"""Seed-aggregated results (the numbers of `amltui export`) grouped by setting, paired deltas below.

A setting (dataset, preset and the config keys that differ from it) is long; the tables show a short label (S1,
S2, …) in a frozen first column and the line under them spells the labels out, so rows that differ only in their
setting stay distinguishable at 80 columns. Within a setting the baseline comes first (report.aggregate's order).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from amltui.app.results.report import IA_METRICS, Cell, Row, footnotes, present_metrics
from amltui.app.runs.store import StoreError
from amltui.app.safetext import markup_safe
from amltui.app.service import browse
from amltui.termplot.frontier import sweep_view
from amltui.tui import actions
from amltui.tui.keys import BACK
from amltui.tui.messages import ResultsLoaded
from core.metrics import HEADLINE_ORDER, METRIC_LABELS

if TYPE_CHECKING:
    from amltui.tui.dashboard import DashboardApp




class ResultsScreen(Screen):
    BINDINGS = [
        BACK,
        Binding("e", "export", "Export .md"),
        Binding("s", "next_sweep", "Sweep"),  # one sweep's rows and frontier (amltui/termplot/frontier.py)
        Binding("tab", "app.focus_next", "Switch table", show=False),
    ]
    app: DashboardApp
    TITLE = "[b]Results[/b]: accuracy %, mean ± std over seeds (n); baseline first in each setting"
    DEFAULT_CSS = """
    ResultsScreen #settings {
        height: auto;
        max-height: 3;
        padding: 0 1;
    }
    """

    # The seed-aggregated rows; watch_rows fills both tables (only when a read brought different rows).
    rows: reactive[list[Row]] = reactive(list, init=False, repaint=False)

    def __init__(self) -> None:
        super().__init__()
        self._stat: tuple[int, int] | None = None
        self._reading = threading.Lock()
        self.loaded = False
        self.sweep: str | None = None
        self.frontier: Any = None
        self.labels: dict[tuple[str, str], str] = {}  # (dataset, setting) → S1, S2, … in the rows' order

    def compose(self) -> ComposeResult:
        yield Static(self.TITLE, id="results-title")
        yield DataTable(id="results", cursor_type="row", zebra_stripes=True)
        # What explains the table scrolls under it: on a short terminal (80×24) the frontier and the Δ table
        # must not take the main table's rows away (Tab moves the focus here, then ↑/↓ scroll).
        with VerticalScroll(id="results-below"):
            yield Static(id="settings")
            yield Static("[b]Δ vs the reference baseline[/b] of the same setting, seed by seed (points)",
                         id="deltas-title")
            yield DataTable(id="deltas", cursor_type="row", zebra_stripes=True)
            yield Static(id="results-notes")
            yield Static(id="frontier")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(2.0, self.poll)

    @work(thread=True, group="results", exclusive=True, exit_on_error=False)
    def poll(self) -> None:
        """Aggregate the store in a thread when store.json changed; a newer poll replaces one under way."""
        if self._reading.locked():
            return  # a read is under way: the next tick reads (no threads pile up behind a slow read)
        with self._reading:  # one read at a time, delivered in order
            if not get_current_worker().is_cancelled:  # else a newer poll waits behind this one
                self._read()

    def _read(self) -> None:
        path = Path(self.app.runs_dir) / "store.json"
        try:
            st = path.stat()
            stat: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stat = None
        if self.loaded and stat == self._stat:
            return
        try:
            # Damaged records (a NaN or mistyped metric) are left out, never averaged in.
            records = browse.checked_records(self.app.runs_dir)
            if sweep := self.sweep:
                rows, self.frontier = sweep_view(records, self.app.runs_dir, sweep)
            else:
                rows = browse.results_by_setting(records)
        except (StoreError, OSError, ValueError) as exc:
            self.post_message(ResultsLoaded(None, str(exc)))
            return
        self._stat = stat if sweep == self.sweep else None  # the view changed meanwhile: read again
        self.post_message(ResultsLoaded(rows))

    @on(ResultsLoaded)
    def _loaded(self, message: ResultsLoaded) -> None:
        if message.error:
            title = f"[b red]Cannot read the run index[/]: {markup_safe(message.error, lines=True)}"
            self.query_one("#results-title", Static).update(title)
        if message.rows is not None:
            self.loaded = True
            self.rows = message.rows

    def watch_rows(self, rows: list[Row]) -> None:
        # aggregate's order: by dataset and setting, the baseline first in each; a sweep's: by the swept keys
        self.labels = setting_labels(rows)
        self.query_one("#frontier", Static).display = bool(self.sweep)
        if self.sweep:
            self.query_one("#frontier", Static).update(self.frontier)
            self.query_one("#results-title", Static).update(f"[b]Sweep {markup_safe(self.sweep)}[/b]: a row per grid "
                                                            "point, sorted by the swept keys (s: next sweep)")
        present = present_metrics(rows) if rows else []
        # The most telling first, so that 80 columns show A_orig, A_PGD and A_SA (export keeps METRIC_ORDER).
        metrics = sorted(present, key=lambda m: HEADLINE_ORDER.index(m) if m in HEADLINE_ORDER else len(HEADLINE_ORDER))
        self._fill_results(rows, metrics)
        self._fill_deltas(rows, metrics)
        notes = footnotes(rows, metrics) if rows else []
        self.query_one("#results-notes", Static).update(markup_safe("\n".join(notes), lines=True))
        self._show_settings()

    def _show_settings(self, highlighted: int | None = None) -> None:
        """All settings spelled out when they fit in three lines, else the highlighted row's."""
        view = self.query_one("#settings", Static)
        labels = self.labels
        view.display = bool(labels)
        if len(labels) <= 3:
            view.update(Text("\n").join(_legend(label, key) for key, label in labels.items()))
            return
        rows = self.rows
        row = rows[highlighted] if highlighted is not None and 0 <= highlighted < len(rows) else rows[0]
        key = (row.dataset, row.setting)
        view.update(_legend(labels[key], key) + Text(f"   ({len(labels)} settings: move the cursor to see "
                                                     "another's)", style="dim"))

    @on(DataTable.RowHighlighted, "#results")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if len(self.labels) > 3:
            self._show_settings(event.cursor_row)

    def _fill_results(self, rows: list[Row], metrics: list[str]) -> None:
        table = self.query_one("#results", DataTable)
        table.clear(columns=True)
        for label in ("set", "variant", *(METRIC_LABELS[m] for m in metrics), "seeds", "dataset", "setting"):
            table.add_column(label, key=label)
        for row in rows:
            style = "bold" if row.variant == "baseline" else ""
            table.add_row(self._label(row), Text(row.variant, style=style),
                          *(row.cells[m].text() + _mark(row, m) for m in metrics), row.seeds_text(), row.dataset,
                          row.setting)
        table.fixed_columns = 2  # the setting's label and the variant stay when the table scrolls sideways
        if not rows:
            table.add_column("")
            table.add_row("No finished runs yet: results appear as runs end (status done).")

    def _label(self, row: Row) -> Text:
        return Text(self.labels[(row.dataset, row.setting)], style="bold cyan")

    def _fill_deltas(self, rows: list[Row], metrics: list[str]) -> None:
        deltas = self.query_one("#deltas", DataTable)
        deltas.clear(columns=True)
        paired = [r for r in rows if r.deltas or r.pairing]
        for label in ("set", "variant", *(f"Δ{METRIC_LABELS[m]}" for m in metrics), "dataset", "setting"):
            deltas.add_column(label)
        for row in paired:
            if row.deltas:
                cells = [_delta(row.deltas[m], _mark(row, m)) for m in metrics]
            else:  # no reference baseline in this setting: say so rather than pair with another row
                cells = [Text(row.pairing, style="yellow")] + [Text("")] * (len(metrics) - 1)
            deltas.add_row(self._label(row), row.variant, *cells, row.dataset, row.setting)
        deltas.fixed_columns = 2
        self.query_one("#deltas-title").display = bool(paired)
        deltas.display = bool(paired)

    def action_next_sweep(self) -> None:
        before = self.sweep
        self.sweep = browse.following_sweep(self.app.runs_dir, self.sweep)
        if before is None and self.sweep is None:
            self.notify("No sweeps in this runs folder: `amltui run … --grid KEY=V1,V2 --sweep NAME` (or the launch "
                        "form's grid field) makes one", title="s: sweeps", severity="warning", markup=False)
            return
        self.loaded = False  # re-read at once, whatever the index's mtime
        if not self.sweep:
            self.query_one("#results-title", Static).update(self.TITLE)
        self.poll()

    def action_export(self) -> None:
        self._export()

    @work(thread=True, group="export", exclusive=True, exit_on_error=False)
    def _export(self) -> None:
        try:
            path = actions.export_results(self.app.runs_dir)
        except (StoreError, OSError, ValueError) as exc:
            self.app.call_from_thread(self.notify, f"export failed: {exc}", severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, str(path), title="Results exported", markup=False)


def setting_labels(rows: list[Row]) -> dict[tuple[str, str], str]:
    """A short label per (dataset, setting), numbered in the order the rows show them."""
    labels: dict[tuple[str, str], str] = {}
    for row in rows:
        labels.setdefault((row.dataset, row.setting), f"S{len(labels) + 1}")
    return labels


def _legend(label: str, key: tuple[str, str]) -> Text:
    dataset, setting = key
    return Text.assemble((label, "bold cyan"), f" = {dataset} · {setting}")


def _mark(row: Row, metric: str) -> str:
    """† on the A_IA metrics of a row whose target table does not fit its data (the notes say why)."""
    return "†" if row.ia_note and metric in IA_METRICS else ""


def _delta(cell: Cell, suffix: str = "") -> Text:
    text = cell.text(signed=True) + suffix
    if not cell.values:
        return Text(text)
    return Text(text, style="green" if cell.mean > 0 else "red" if cell.mean < 0 else "")
