"""The main screen: every run, live, with filter, sort and the run actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from amltui.app.store import StoreError
from amltui.tui import actions
from amltui.tui.actions import LaunchResult
from amltui.tui.data import LIVE, RunsSnapshot
from amltui.tui.screens.confirm import ConfirmScreen
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.screens.results import ResultsScreen
from amltui.tui.widgets.gpu_strip import GpuStrip, runs_by_gpu, shown_gpus
from amltui.tui.widgets.runs_table import RunsTable

GPU_INTERVAL = 2.0  # seconds between GPU reads (NVML: about a millisecond)

if TYPE_CHECKING:
    from amltui.tui.dashboard import DashboardApp


class RunsLoaded(Message):
    """A poll finished; ``snapshot`` is None when nothing had changed."""

    def __init__(self, snapshot: RunsSnapshot | None) -> None:
        super().__init__()
        self.snapshot = snapshot


class GpusLoaded(Message):
    """A GPU inventory read finished (the GPUs amltui would schedule on)."""

    def __init__(self, gpus: list) -> None:
        super().__init__()
        self.gpus = gpus


class RunsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Detail"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse sort", show=False),
        Binding("n", "launch", "Launch"),
        Binding("c", "cancel", "Cancel"),
        Binding("R", "resume", "Resume"),
        Binding("d", "delete", "Delete"),
        Binding("r", "results", "Results"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]
    AUTO_FOCUS = "#runs"
    app: DashboardApp

    def __init__(self) -> None:
        super().__init__()
        self._polling = False
        self._force_next = False
        self.error: str | None = None
        self.loaded = False  # at least one snapshot arrived
        self.polls = 0  # snapshots applied (the bench reads these)
        self._shown_status = ""
        self._shown_banner: tuple[str, bool] | None = None
        self.gpus_loaded = 0  # GPU inventory reads applied

    def compose(self) -> ComposeResult:
        yield Static(id="status-line")
        yield GpuStrip(id="gpu-strip")
        yield Input(placeholder="filter: substring of id / variant / dataset / status", id="filter", compact=True)
        yield Static(id="banner")
        yield RunsTable(id="runs")
        yield Footer(show_command_palette=False)

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def on_mount(self) -> None:
        self._update_status_line()
        self.poll(force=True)
        self.set_interval(self.app.poll_interval, self.poll)
        self._read_gpus()
        self.set_interval(GPU_INTERVAL, self._read_gpus)

    # ---- polling ---------------------------------------------------------------------------------------

    def poll(self, force: bool = False) -> None:
        """Start a background read unless one is under way (then it is redone once it ends)."""
        if self._polling:
            self._force_next = self._force_next or force
            return
        self._polling = True
        self._read(force)

    @work(thread=True, group="poll", exit_on_error=False)
    def _read(self, force: bool) -> None:
        try:
            snapshot = self.app.reader.poll(force)
        except Exception as exc:  # a bug or an odd file must not take the dashboard down
            snapshot = RunsSnapshot([], error=f"{type(exc).__name__}: {exc}")
        self.post_message(RunsLoaded(snapshot))

    @on(RunsLoaded)
    def _apply(self, message: RunsLoaded) -> None:
        self._polling = False
        snapshot = message.snapshot
        if snapshot is not None:
            self.polls += 1
            self.loaded = True
            self.error = snapshot.error
            if snapshot.error is None:
                self.table.show(snapshot.rows)
                strip = self.query_one(GpuStrip)
                if strip.gpus:  # which runs are on which GPU changes with the runs, not with the GPU reads
                    strip.show(strip.gpus, runs_by_gpu(row.record for row in self.table.rows_by_id.values()))
            self._update_status_line()
        if self._force_next:
            self._force_next = False
            self.poll(force=True)

    def _update_status_line(self) -> None:
        table = self.query_one(RunsTable)
        rows = list(table.rows_by_id.values())
        count = {s: sum(r.cells["status"] == s for r in rows) for s in ("running", "queued", "failed")}
        arrow = "↓" if table.sort_reverse else "↑"
        parts = [escape(str(self.app.runs_dir)), f"{len(rows)} runs", f"{count['running']} running",
                 f"{count['queued']} queued", f"sort {table.sort_column}{arrow}"]
        if count["failed"]:
            parts.insert(4, f"[red]{count['failed']} failed[/]")
        damaged = sum(r.cells["status"] == "damaged" for r in rows)
        if damaged:
            parts.insert(4, f"[magenta]{damaged} damaged[/] (`amltui store rebuild`)")
        if table.filter_text:
            parts.append(f"filter “{escape(table.filter_text)}” ({table.row_count} shown)")
        line = " · ".join(parts)
        if line != self._shown_status:  # an unchanged Static update would still cost a layout pass
            self._shown_status = line
            self.query_one("#status-line", Static).update(line)
        if self.error:
            banner = (f"[b]Cannot read the run index[/b]: {escape(self.error)}", True)
        elif self.loaded and not rows:
            banner = (f"No runs in {escape(str(self.app.runs_dir))} yet. Press [b]n[/b] to launch one.", False)
        else:
            banner = None
        if banner != self._shown_banner:
            self._shown_banner = banner
            widget = self.query_one("#banner", Static)
            widget.display = banner is not None
            if banner is not None:
                widget.update(banner[0])
                widget.set_class(banner[1], "error")

    # ---- GPU strip -------------------------------------------------------------------------------------

    @work(thread=True, group="gpus", exclusive=True, exit_on_error=False)
    def _read_gpus(self) -> None:
        from amltui.app import gpus

        try:
            found = gpus.inventory()
        except Exception:  # a broken driver must not take the dashboard down: no strip
            found = gpus.Inventory()
        self.post_message(GpusLoaded(shown_gpus(found)))

    @on(GpusLoaded)
    def _show_gpus(self, message: GpusLoaded) -> None:
        self.gpus_loaded += 1
        records = [row.record for row in self.table.rows_by_id.values()]
        self.query_one(GpuStrip).show(message.gpus, runs_by_gpu(records))

    # ---- navigation ------------------------------------------------------------------------------------

    def action_open(self) -> None:
        run_id = self.table.current_id
        if run_id:
            self.app.push_screen(DetailScreen(run_id))

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(DetailScreen(str(event.row_key.value)))

    def action_results(self) -> None:
        self.app.push_screen(ResultsScreen())

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._update_status_line()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self.table.focus()

    def action_sort(self) -> None:
        self.table.cycle_sort()
        self._update_status_line()

    def action_reverse(self) -> None:
        self.table.toggle_reverse()
        self._update_status_line()

    # ---- actions on runs -------------------------------------------------------------------------------

    def _selected(self) -> tuple[str, str] | None:
        run_id = self.table.current_id
        if run_id is None:
            self.notify("No run selected", severity="warning")
            return None
        return run_id, str(self.table.rows_by_id[run_id].cells["status"])

    def action_launch(self) -> None:
        def launched(result: LaunchResult | None) -> None:
            if result is not None:
                self.notify(result.message(), title="Launched" if result.queued else "Reused finished runs")
                self.poll(force=True)

        self.app.push_screen(LaunchScreen(self.app.runs_dir), launched)

    def action_cancel(self) -> None:
        if (selected := self._selected()) is None:
            return
        run_id, status = selected
        if status not in LIVE:
            self.notify(f"{run_id} is already {status}", severity="warning")
            return
        self._confirm(f"Cancel run [b]{run_id}[/b] ({status})?\nFinished epochs are kept; it can be resumed.",
                      actions.cancel, run_id)

    def action_resume(self) -> None:
        if (selected := self._selected()) is None:
            return
        run_id, status = selected
        if status not in ("failed", "cancelled", "orphaned"):
            self.notify(f"{run_id} is {status}; only failed, cancelled or orphaned runs resume", severity="warning")
            return
        self._confirm(f"Resume run [b]{run_id}[/b] from its last checkpoint?", actions.resume, run_id)

    def action_delete(self) -> None:
        if (selected := self._selected()) is None:
            return
        run_id, status = selected
        if status in LIVE:
            self.notify(f"{run_id} is {status}; cancel it first", severity="warning")
            return
        self._confirm(f"Delete run [b]{run_id}[/b] and its folder?\nThis cannot be undone.", actions.delete,
                      run_id, danger=True)

    def _confirm(self, question: str, fn: Callable[..., str], run_id: str, danger: bool = False) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._act(fn, run_id)

        self.app.push_screen(ConfirmScreen(question, danger=danger), answered)

    @work(thread=True, group="actions", exit_on_error=False)
    def _act(self, fn: Callable[..., str], run_id: str) -> None:
        try:
            text, severity = fn(self.app.runs_dir, run_id), "information"
        except (actions.ActionError, StoreError, OSError, ValueError) as exc:
            text, severity = str(exc), "error"
        except Exception as exc:  # unexpected: report, never crash the dashboard
            text, severity = f"{type(exc).__name__}: {exc}", "error"
        self.app.call_from_thread(self._acted, text, severity)

    def _acted(self, text: str, severity: str) -> None:
        self.notify(text, severity=severity, markup=False)  # type: ignore[arg-type]
        self.poll(force=True)
