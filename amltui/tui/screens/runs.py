"""The main screen: every run, live, with filter, sort, marks (space) and the run actions on one or many runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from amltui.app import gpus
from amltui.app.runs.records import LIVE, Status
from amltui.app.runs.store import StoreError
from amltui.app.safetext import markup_safe
from amltui.app.service import browse
from amltui.tui import actions
from amltui.tui.actions import LaunchResult
from amltui.tui.data import RESUMABLE, RunsSnapshot
from amltui.tui.messages import GpusLoaded, RunsLoaded
from amltui.tui.screens.compare import CompareScreen
from amltui.tui.screens.confirm import ConfirmScreen
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.screens.results import ResultsScreen
from amltui.tui.screens.sort_picker import SortPicker
from amltui.tui.widgets.gpu_strip import GpuStrip, runs_by_gpu, shown_gpus
from amltui.tui.widgets.runs_table import RunsTable

GPU_INTERVAL = 2.0  # seconds between GPU reads (NVML: about a millisecond)
LISTED = 12  # run ids a bulk confirmation lists before "… and N more"

if TYPE_CHECKING:
    from amltui.tui.dashboard import DashboardApp


class RunsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Detail", tooltip="Open the run's detail: curves, log, config, PCA, robustness"),
        Binding("question_mark", "help", "Help", tooltip="This list of every key"),
        Binding("slash", "filter", "Filter", tooltip="Filter: words and key=value (variant seed status dataset tag "
                "sweep), all must match"),
        Binding("s", "sort", "Sort", tooltip="Pick the sort key"),
        Binding("S", "reverse", "Reverse sort", show=False),
        # the footer is full at 80 columns: the keys with show=False are listed by ? (amltui/tui/screens/help.py)
        Binding("space", "mark", "Mark", show=False, tooltip="Mark or unmark the run (for c, d, R and o)"),
        Binding("o", "compare", "Compare marked runs", show=False, tooltip="Overlay the marked runs' curves"),
        Binding("n", "launch", "Launch", tooltip="Launch runs (a form)"),
        Binding("c", "cancel", "Cancel", tooltip="Cancel the run, or all marked runs (asks first)"),
        Binding("R", "resume", "Resume", show=False, tooltip="Resume the run, or all marked runs (asks first)"),
        Binding("d", "delete", "Delete", tooltip="Delete the run and its folder, or all marked runs (asks first)"),
        Binding("r", "results", "Results", tooltip="The seed-aggregated results table"),
        Binding("b", "rebuild", "Rebuild a corrupt index", show=False,
                tooltip="Rebuild a corrupt run index from the run folders (asks first)"),
        Binding("escape", "clear_filter", "Clear the filter, then the marks", show=False),
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
        yield Input(placeholder="filter: words and key=value (variant seed status dataset tag sweep)", id="filter",
                    compact=True)
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
        # with a filter, how many it shows comes first: the end of the line is cut at 80 columns
        shown = f" ({table.row_count} shown)" if table.filter_text else ""
        parts = [markup_safe(str(self.app.runs_dir)), f"{len(rows)} runs{shown}", f"{count[Status.RUNNING]} running",
                 f"{count[Status.QUEUED]} queued"]
        for status, style in ((Status.FAILED, "red"), (Status.CANCELLED, "yellow"), (Status.DAMAGED, "magenta")):
            if count[status]:
                parts.append(f"[{style}]{count[status]} {status}[/]")
        if table.marked:
            parts.append(f"[b yellow]{len(table.marked)} marked[/]")
        parts.append(f"sort {table.sort_column}{arrow}")
        self.status_line = " · ".join(parts)
        self.banner = self._banner(bool(rows))

    def _banner(self, any_rows: bool) -> tuple[str, bool] | None:
        """The line under the filter: a store that cannot be read, a bad filter, or an empty runs folder."""
        if self.error:
            return (f"[b]Cannot read the run index[/b]: {markup_safe(self.error, lines=True)}\nPress [b]b[/b] to "
                    "rebuild it from the run folders (as `amltui store rebuild`; the unreadable file is kept aside).",
                    True)
        if self.table.filter_error:
            return markup_safe(self.table.filter_error, lines=True), True  # it says "filter: …" itself
        if self.loaded and not any_rows:
            return f"No runs in {markup_safe(str(self.app.runs_dir))} yet. Press [b]n[/b] to launch one.", False
        return None

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

    def action_help(self) -> None:
        self.app.show_help()

    def action_mark(self) -> None:
        if self.table.toggle_mark() is not None:
            self._update_status_line()

    def action_compare(self) -> None:
        """Overlay the marked runs' curves (amltui/tui/screens/compare.py: CompareScreen(run_ids))."""
        run_ids = list(self.table.marked)
        if len(run_ids) < 2:
            self.notify("Mark two or more runs with space, then o compares them", severity="warning")
            return
        self.app.push_screen(CompareScreen(run_ids))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.value and not box.display and self.table.marked:
            self.table.clear_marks()  # nothing to clear in the filter: Escape unmarks
            self._update_status_line()
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
        def picked(column: str | None) -> None:
            if column is not None:
                self.table.set_sort(column)
                self._update_status_line()

        self.app.push_screen(SortPicker(self.table.sort_column, self.table.sort_reverse), picked)

    def action_reverse(self) -> None:
        self.table.toggle_reverse()
        self._update_status_line()

    # ---- actions on runs -------------------------------------------------------------------------------

    def _targets(self) -> list[tuple[str, str]]:
        """(run id, status) of the marked runs, else of the run under the cursor (empty: a warning was shown)."""
        ids = list(self.table.marked) or ([self.table.current_id] if self.table.current_id else [])
        if not ids:
            self.notify("No run selected", severity="warning")
        return [(i, str(self.table.rows_by_id[i].cells["status"])) for i in ids if i in self.table.rows_by_id]

    def action_launch(self) -> None:
        def launched(result: LaunchResult | None) -> None:
            if result is not None:
                self.notify(result.message(), title="Launched" if result.queued else "Reused finished runs")
                self.poll(force=True)

        self.app.push_screen(LaunchScreen(self.app.runs_dir), launched)

    def action_cancel(self) -> None:
        self._ask(LIVE.__contains__, "{run_id} is already {status}",
                  "Cancel run [b]{run_id}[/b] ({status})?\nFinished epochs are kept; it can be resumed.",
                  "Cancel", ("Its finished epochs are kept; it can be resumed.",
                             "Finished epochs are kept; they can be resumed."), actions.cancel)

    def action_resume(self) -> None:
        self._ask(RESUMABLE.__contains__, "{run_id} is {status}; only failed, cancelled or orphaned runs resume",
                  "Resume run [b]{run_id}[/b] from its last checkpoint?", "Resume",
                  ("It continues from its last checkpoint.",
                   "Each continues from its last checkpoint; one scheduler runs them all."), actions.resume_many,
                  together=True)

    def action_delete(self) -> None:
        self._ask(lambda status: status not in LIVE, "{run_id} is {status}; cancel it first",
                  "Delete run [b]{run_id}[/b] and its folder?\nThis cannot be undone.", "Delete",
                  ("Its folder is deleted too. This cannot be undone.",
                   "Their folders are deleted too. This cannot be undone."), actions.delete, danger=True)

    def _ask(self, allowed: Callable[[str], bool], refusal: str, question: str, verb: str, note: tuple[str, str],
             fn: Callable[..., str], danger: bool = False, together: bool = False) -> None:
        """Act on the marked runs (else the run under the cursor) after one yes in the confirmation modal.

        ``fn(runs_dir, run_id)`` once per run, or with ``together`` ``fn(runs_dir, run_ids)`` once for them all
        (a bulk resume: one scheduler for all the runs).

        Runs whose status ``allowed`` refuses are left out (named in the question; a warning when none is left).
        ``refusal`` and ``question`` (one unmarked run) are formatted with run_id and status; several runs get
        "``verb`` N runs?", their ids and ``note`` (its text for one run, for several).
        """
        targets = self._targets()
        ok = [run_id for run_id, status in targets if allowed(status)]
        refused = [refusal.format(run_id=run_id, status=status) for run_id, status in targets if not allowed(status)]
        if not ok:
            if refused:
                self.notify("\n".join(refused), severity="warning", markup=False)
            return
        if not self.table.marked:
            text = question.format(run_id=ok[0], status=targets[0][1])
        else:
            text = _bulk_question(verb, ok, refused, note)

        def answered(yes: bool | None) -> None:
            if yes:
                if together:
                    self._act_together(fn, ok)
                else:
                    self._act(fn, ok)
                self.table.clear_marks()
                self._update_status_line()

        self.app.push_screen(ConfirmScreen(text, danger=danger), answered)

    @work(thread=True, group="actions", exit_on_error=False)  # not exclusive: every confirmed action runs
    def _act(self, fn: Callable[..., str], run_ids: list[str]) -> None:
        """``fn(runs_dir, run_id)`` (amltui/tui/actions.py) for each run; one failure does not stop the others."""
        lines, severity = [], "information"
        for run_id in run_ids:
            try:
                lines.append(fn(self.app.runs_dir, run_id))
            except (actions.ActionError, StoreError, OSError, ValueError) as exc:
                lines.append(str(exc))
                severity = "error"
            except Exception as exc:  # unexpected: report, never crash the dashboard
                lines.append(f"{run_id}: {type(exc).__name__}: {exc}")
                severity = "error"
        self.app.call_from_thread(self._acted, "\n".join(lines), severity)

    @work(thread=True, group="actions", exit_on_error=False)
    def _act_together(self, fn: Callable[..., str], run_ids: list[str]) -> None:
        """``fn(runs_dir, run_ids)`` (amltui/tui/actions.py resume_many) once for all the runs."""
        try:
            text, severity = fn(self.app.runs_dir, run_ids), "information"
        except (actions.ActionError, StoreError, OSError, ValueError) as exc:
            text, severity = str(exc), "error"
        except Exception as exc:  # unexpected: report, never crash the dashboard
            text, severity = f"{type(exc).__name__}: {exc}", "error"
        self.app.call_from_thread(self._acted, text, severity)

    def _acted(self, text: str, severity: str) -> None:
        self.notify(text, severity=severity, markup=False)  # type: ignore[arg-type]
        self.poll(force=True)

    # ---- a corrupt index -----------------------------------------------------------------------------

    def action_rebuild(self) -> None:
        if self.error is None:
            self.notify("The run index reads fine: nothing to rebuild", severity="information")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._rebuild()

        self.app.push_screen(ConfirmScreen(
            "Rebuild the run index from the run folders (each run's run.json), as `amltui store rebuild`?\n"
            "The unreadable index is moved aside, not deleted."), answered)

    @work(thread=True, group="actions", exit_on_error=False)
    def _rebuild(self) -> None:
        """The service's index rebuild (amltui/app/service/browse.py), as `amltui store rebuild` runs it."""
        try:
            report = browse.rebuild_index(self.app.runs_dir)
        except (StoreError, OSError) as exc:
            self.app.call_from_thread(self._acted, f"rebuild failed: {exc}", "error")
            return
        lines = [f"restored {report.restored} run(s)"]
        lines += [f"kept the unreadable index as {report.backup_path}"] if report.backup_path else []
        lines += [f"marked damaged {run_id}: {reason}" for run_id, reason in report.damaged]
        lines += [f"skipped {path}: {reason}" for path, reason in report.skipped]
        self.app.call_from_thread(self._acted, "\n".join(lines), "warning" if report.damaged else "information")


def _bulk_question(verb: str, run_ids: list[str], refused: list[str], note: tuple[str, str]) -> str:
    """The confirmation of an action on marked runs: every id (up to LISTED), what is left out and why; the
    grammar follows the count ("Delete 1 run? … Its folder is …", "Delete 2 runs? … Their folders are …")."""
    listed = "\n".join(f"  {markup_safe(run_id)}" for run_id in run_ids[:LISTED])
    if len(run_ids) > LISTED:
        listed += f"\n  … and {len(run_ids) - LISTED} more"
    one = len(run_ids) == 1
    text = f"{verb} {len(run_ids)} run{'' if one else 's'}?\n{listed}\n{note[0] if one else note[1]}"
    if refused:
        text += f"\nLeft out ({len(refused)}): " + "; ".join(markup_safe(r) for r in refused)
    return text
