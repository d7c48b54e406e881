"""The main screen: every run, live, with filter, sort and the run actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from amltui.app import gpus
from amltui.app.records import LIVE, Status
from amltui.app.store import StoreError
from amltui.tui import actions
from amltui.tui.actions import LaunchResult
from amltui.tui.data import RESUMABLE, RunsSnapshot
from amltui.tui.messages import GpusLoaded, RunsLoaded
from amltui.tui.screens.confirm import ConfirmScreen
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.screens.results import ResultsScreen
from amltui.tui.widgets.gpu_strip import GpuStrip, runs_by_gpu, shown_gpus
from amltui.tui.widgets.runs_table import RunsTable

GPU_INTERVAL = 2.0  # seconds between GPU reads (NVML: about a millisecond)

if TYPE_CHECKING:
    from amltui.tui.dashboard import DashboardApp


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

    # The line above the table and the banner (text, is-an-error) under it; their watch_ methods redraw them only
    # when they change (an unchanged Static update would still cost a layout pass).
    status_line: reactive[str] = reactive("", init=False, repaint=False)
    banner: reactive[tuple[str, bool] | None] = reactive(None, init=False, repaint=False)

    def __init__(self) -> None:
        super().__init__()
        self.error: str | None = None
        self.loaded = False  # at least one snapshot arrived
        self.polls = 0  # snapshots applied (the bench reads these)
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

    @property
    def reading(self) -> bool:
        """A poll is under way or waiting for the one before it."""
        return self.app.reader.lock.locked() or any(
            w.node is self and w.group == "poll" and not w.is_finished for w in self.workers)

    @work(thread=True, group="poll", exclusive=True, exit_on_error=False)
    def poll(self, force: bool = False) -> None:
        """Read the store in a thread; a newer poll replaces this one unless this one is forced."""
        if not force and self.app.reader.lock.locked():
            return  # a read is under way: the next tick reads (no threads pile up behind a slow read)
        with self.app.reader.lock:  # one read at a time, its snapshot posted before the next read starts
            if get_current_worker().is_cancelled and not force:
                return  # a newer poll waits behind this one and reads instead
            try:
                snapshot = self.app.reader.poll(force)
            except Exception as exc:  # a bug or an odd file must not take the dashboard down
                snapshot = RunsSnapshot([], error=f"{type(exc).__name__}: {exc}")
            self.post_message(RunsLoaded(snapshot))

    @on(RunsLoaded)
    def _apply(self, message: RunsLoaded) -> None:
        snapshot = message.snapshot
        if snapshot is None:
            return
        self.polls += 1
        self.loaded = True
        self.error = snapshot.error
        if snapshot.error is None:
            self.table.show(snapshot.rows)
            strip = self.query_one(GpuStrip)
            if strip.gpus:  # which runs are on which GPU changes with the runs, not with the GPU reads
                strip.show(strip.gpus, runs_by_gpu(row.record for row in self.table.rows_by_id.values()))
        self._update_status_line()

    def _update_status_line(self) -> None:
        table = self.query_one(RunsTable)
        rows = list(table.rows_by_id.values())
        count = {s: sum(r.cells["status"] == s for r in rows) for s in Status}
        arrow = "↓" if table.sort_reverse else "↑"
        parts = [escape(str(self.app.runs_dir)), f"{len(rows)} runs", f"{count[Status.RUNNING]} running",
                 f"{count[Status.QUEUED]} queued", f"sort {table.sort_column}{arrow}"]
        if count[Status.FAILED]:
            parts.insert(4, f"[red]{count[Status.FAILED]} failed[/]")
        if count[Status.DAMAGED]:
            parts.insert(4, f"[magenta]{count[Status.DAMAGED]} damaged[/] (`amltui store rebuild`)")
        if table.filter_text:
            parts.append(f"filter “{escape(table.filter_text)}” ({table.row_count} shown)")
        self.status_line = " · ".join(parts)
        if self.error:
            self.banner = (f"[b]Cannot read the run index[/b]: {escape(self.error)}", True)
        elif self.loaded and not rows:
            self.banner = (f"No runs in {escape(str(self.app.runs_dir))} yet. Press [b]n[/b] to launch one.", False)
        else:
            self.banner = None

    def watch_status_line(self, line: str) -> None:
        self.query_one("#status-line", Static).update(line)

    def watch_banner(self, banner: tuple[str, bool] | None) -> None:
        widget = self.query_one("#banner", Static)
        widget.display = banner is not None
        if banner is not None:
            widget.update(banner[0])
            widget.set_class(banner[1], "error")

    # ---- GPU strip -------------------------------------------------------------------------------------

    @work(thread=True, group="gpus", exclusive=True, exit_on_error=False)
    def _read_gpus(self) -> None:
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
        self._ask(LIVE.__contains__, "{run_id} is already {status}",
                  "Cancel run [b]{run_id}[/b] ({status})?\nFinished epochs are kept; it can be resumed.",
                  actions.cancel)

    def action_resume(self) -> None:
        self._ask(RESUMABLE.__contains__, "{run_id} is {status}; only failed, cancelled or orphaned runs resume",
                  "Resume run [b]{run_id}[/b] from its last checkpoint?", actions.resume)

    def action_delete(self) -> None:
        self._ask(lambda status: status not in LIVE, "{run_id} is {status}; cancel it first",
                  "Delete run [b]{run_id}[/b] and its folder?\nThis cannot be undone.", actions.delete, danger=True)

    def _ask(self, allowed: Callable[[str], bool], refusal: str, question: str, fn: Callable[..., str],
             danger: bool = False) -> None:
        """Act on the selected run after a yes in the confirmation modal; a warning instead where ``allowed``
        says no to its status. ``refusal`` and ``question`` are formatted with run_id and status."""
        if (selected := self._selected()) is None:
            return
        run_id, status = selected
        if not allowed(status):
            self.notify(refusal.format(run_id=run_id, status=status), severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._act(fn, run_id)

        self.app.push_screen(ConfirmScreen(question.format(run_id=run_id, status=status), danger=danger), answered)

    @work(thread=True, group="actions", exit_on_error=False)  # not exclusive: every confirmed action runs
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
