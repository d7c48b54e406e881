"""Several runs side by side: their curves overlaid (one colour per run), final metrics, and a config diff.

Pushed by the runs screen with the selected runs; the runs may still be training, so their folders are re-read
every few seconds in a thread (as the detail screen does), and a run that disappeared is said to be gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from amltui.app.runs.folders import RunDir
from amltui.app.runs.records import inspect
from amltui.app.runs.status_style import STATUS_STYLE
from amltui.tui.data import read_json_or_none
from amltui.tui.keys import BACK, tab_keys
from amltui.tui.messages import CompareLoaded
from amltui.tui.screens.detail import epoch_series
from amltui.tui.widgets.chart import LineChart, Series
from core.config import format_value
from core.metrics import HEADLINE_ORDER, METRIC_LABELS

if TYPE_CHECKING:
    from amltui.tui.dashboard import DashboardApp

# One colour per run, in selection order (distinct on 16-colour terminals too); the number is the run's mark.
RUN_STYLES = ("cyan", "red", "yellow", "green", "magenta", "blue", "bright_white", "bright_red")
# The accuracy chart's metric, cycled with `m` (metrics.jsonl keys of the per-epoch monitor).
ACCURACY_KEYS = (("monitor_A_SA", "A_SA"), ("monitor_A_PGD", "A_PGD"), ("monitor_A_orig", "A_orig"))
FINAL = HEADLINE_ORDER[:5]  # A_AA is rarely there: the legend stays one line
HIDDEN = ("overrides",)  # how a value was given, not what it is


@dataclass(frozen=True)
class RunCurves:
    """What the compare screen shows of one run (None record: the folder is gone or unreadable)."""

    run_id: str
    record: dict[str, Any] | None
    epochs: list[dict[str, Any]]
    config: dict[str, Any] | None


def read_run(runs_dir: Path, run_id: str) -> RunCurves:
    """One run's record, epoch metrics and config, from its folder (blocking: call from a worker)."""
    folder = RunDir(Path(runs_dir) / run_id)
    record = read_json_or_none(folder.record_file)
    try:
        epochs = [m for m in folder.read_metrics() if m.get("kind") == "epoch"]
    except OSError:
        epochs = []
    config = read_json_or_none(folder.config_file)
    return RunCurves(run_id, inspect(record) if isinstance(record, dict) else None, epochs,
                     config if isinstance(config, dict) else None)


def style_of(index: int) -> str:
    return RUN_STYLES[index % len(RUN_STYLES)]


def config_diff(configs: list[dict[str, Any] | None]) -> list[tuple[str, list[Any]]]:
    """(key, value per run) for every config key whose value is not the same in all runs, in config order.

    Runs without a config (None) are left out of the comparison; their value reads "–" (as a key a run lacks)."""
    keys: list[str] = []
    for config in configs:
        keys += [k for k in config or {} if k not in keys and k not in HIDDEN]
    present = [c for c in configs if c is not None]
    diff = []
    for key in keys:
        if len({json.dumps(c.get(key, "–"), sort_keys=True, default=str) for c in present}) > 1:
            diff.append((key, [format_value(c[key]) if c is not None and key in c else "–" for c in configs]))
    return diff


def legend_table(runs: list[RunCurves]) -> Table:
    """A row per run in its curve's colour: its number, id, status and final metrics (– where not known)."""
    table = Table.grid(padding=(0, 1))
    for _ in range(3 + len(FINAL)):
        table.add_column(no_wrap=True)
    head = ("run (colour: its curves)", "status", *(METRIC_LABELS[m] for m in FINAL))
    table.add_row("", *(Text(h, style="dim") for h in head))
    for i, run in enumerate(runs):
        mark = Text(f"━{i + 1}", style=f"bold {style_of(i)}")
        if run.record is None:  # deleted meanwhile, or its run.json is unreadable
            table.add_row(mark, run.run_id, Text("not found", style="red"), *("–" for _ in FINAL))
            continue
        status = str(run.record.get("status", "?"))
        metrics = run.record.get("metrics") or {}
        cells = [f"{metrics[m]:.2f}" if isinstance(metrics.get(m), int | float) else "–" for m in FINAL]
        table.add_row(mark, run.run_id, Text(status, style=STATUS_STYLE.get(status, "")), *cells)
    return table


def diff_table(runs: list[RunCurves]) -> Table | Text:
    """The config keys that differ between the runs: a row per key, a column per run (headed by its number)."""
    diff = config_diff([run.config for run in runs])
    if not diff:
        known = sum(run.config is not None for run in runs)
        return Text("The configs are identical (seed included)." if known > 1 else
                    "Fewer than two runs have a config.json to compare.", style="dim")
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False)
    table.add_column("key", style="cyan", no_wrap=True)
    for i, _run in enumerate(runs):
        table.add_column(Text(f"━{i + 1}", style=f"bold {style_of(i)}"))
    for key, values in diff:
        table.add_row(key, *(Text(v) for v in values))
    return table


class CompareScreen(Screen):
    BINDINGS = [
        BACK,
        *tab_keys(("compare-curves", "Curves"), ("compare-config", "Config diff")),
        Binding("m", "next_metric", "Accuracy metric"),
    ]
    DEFAULT_CSS = """
    CompareScreen {
        #compare-legend {
            height: auto;
            max-height: 10;
            padding: 0 1;
        }

        #compare-config-view {
            padding: 0 1;
        }
    }
    """
    app: DashboardApp
    # The last read of the runs' folders; watch_runs draws them.
    runs: reactive[list[RunCurves]] = reactive(list, init=False, repaint=False)
    metric: reactive[int] = reactive(0, init=False, repaint=False)  # index into ACCURACY_KEYS

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = list(dict.fromkeys(run_ids))  # in selection order, each once

    def compose(self) -> ComposeResult:
        yield Static(Text(f"Comparing {len(self.run_ids)} runs", style="bold"), id="compare-legend")
        with TabbedContent(initial="compare-curves"):
            with TabPane("Curves", id="compare-curves"), Vertical():
                yield LineChart("train loss", id="compare-loss", legend=False)
                yield LineChart(self._accuracy_title(), id="compare-acc", legend=False)
            with TabPane("Config diff", id="compare-config"), VerticalScroll():
                yield Static("loading…", id="compare-config-view")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(max(self.app.detail_interval, 1.0), self.poll)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_next_metric(self) -> None:
        self.metric = (self.metric + 1) % len(ACCURACY_KEYS)

    def _accuracy_title(self) -> str:
        return f"{ACCURACY_KEYS[self.metric][1]} % (monitor, each epoch; m: next metric)"

    @work(thread=True, group="compare", exclusive=True, exit_on_error=False)
    def poll(self) -> None:
        """Read every run's folder in a thread; an odd file marks that run, never the screen."""
        runs = []
        for run_id in self.run_ids:
            try:
                runs.append(read_run(self.app.runs_dir, run_id))
            except Exception:  # any odd content: this run is shown as unreadable
                runs.append(RunCurves(run_id, None, [], None))
        self.post_message(CompareLoaded(runs))

    @on(CompareLoaded)
    def _loaded(self, message: CompareLoaded) -> None:
        if message.runs != self.runs:
            self.runs = message.runs

    def watch_runs(self, runs: list[RunCurves]) -> None:
        self.query_one("#compare-legend", Static).update(legend_table(runs))
        self.query_one("#compare-config-view", Static).update(diff_table(runs))
        self._plot()

    def watch_metric(self) -> None:
        self.query_one("#compare-acc", LineChart).title = self._accuracy_title()
        self._plot()

    def _plot(self) -> None:
        key = ACCURACY_KEYS[self.metric][0]
        loss, acc = self._series("train_loss"), self._series(key)
        epochs = [r.record.get("epochs") for r in self.runs if r.record and isinstance(r.record.get("epochs"), int)]
        self.query_one("#compare-loss", LineChart).plot(loss, max(epochs, default=None))
        chart = self.query_one("#compare-acc", LineChart)
        chart.plot(acc, max(epochs, default=None))
        chart.refresh()  # the title may have changed with the same series

    def _series(self, key: str) -> list[Series]:
        return [s for i, run in enumerate(self.runs)
                for s in epoch_series(run.epochs, ((key, run.run_id, style_of(i)),))]
