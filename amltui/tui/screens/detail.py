"""One run: loss and accuracy curves, final metrics, the live log, the resolved config, the PCA figure (computed
on request, as `amltui plot RUN --pca`), the robustness curve."""

from __future__ import annotations

import os
import subprocess
import time
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
from textual.widgets import Footer, RichLog, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from amltui.app.executors.local import PYTHON  # python -P: never imports from the cwd
from amltui.app.fsutil import read_json
from amltui.app.runs.outcomes import CHANCE_MARK, chance_note
from amltui.app.runs.progress import describe
from amltui.app.runs.records import ACTIVE, DAMAGED
from amltui.app.runs.status_style import STATUS_STYLE
from amltui.app.safetext import printable
from amltui.app.science.pca import DONE_PREFIX, ERROR_PREFIX, STAGE_PREFIX
from amltui.tui.data import DetailReader, RunDetail, damaged_record
from amltui.tui.keys import BACK, tab_keys
from amltui.tui.messages import DetailLoaded, PcaStage
from amltui.tui.widgets.chart import LineChart, Series
from amltui.tui.widgets.pca_plot import PcaView, render_pca
from core.aa_spec import describe_aa, short_aa_label
from core.metrics import HEADLINE_ORDER, METRIC_LABELS, METRIC_SHORT_LABELS

if TYPE_CHECKING:
    from amltui.tui.dashboard import DashboardApp

LOSSES = (("train_loss", "total", "bold white"), ("train_ce_clean", "CE clean", "green"),
          ("train_ce_adv", "CE adv", "red"), ("train_triplet_sa", "triplet SA", "magenta"),
          ("train_triplet_ia", "triplet IA", "yellow"))
ACCURACIES = (("monitor_A_orig", "A_orig", "green"), ("monitor_A_SA", "A_SA", "red"),
              ("monitor_A_PGD", "A_PGD", "yellow"))
# The triplets' diagnostics (core/losses.py objective_terms): share of active triplets and mean distance to the mined
# negative; only the triplet types a run computes are in its epochs, so the chart is hidden for a baseline.
TRIPLETS = (("train_active_sa", "active SA", "magenta"), ("train_neg_dist_sa", "D⁻ SA", "cyan"),
            ("train_active_ia", "active IA", "yellow"), ("train_neg_dist_ia", "D⁻ IA", "blue"))
FINAL = HEADLINE_ORDER  # the most telling first (80 columns)
HEAD_WIDTH = 78  # the header's width in an 80-column terminal (the default where the screen's is not known)
MONITOR = ("A_orig", "A_PGD", "A_SA")  # estimated each epoch (monitor_*), shown until the final metrics exist


def epoch_series(epochs: list[dict[str, Any]], keys: tuple[tuple[str, str, str], ...],
                 keep_zeros: bool = False) -> list[Series]:
    """A chart series per (metrics.jsonl key, label, style) the epochs hold (loss terms that stay 0 left out,
    unless ``keep_zeros``: a diagnostic at 0 is a measurement)."""
    out = []
    for key, label, style in keys:
        points = [(float(e["epoch"]), float(e[key])) for e in epochs
                  if isinstance(e.get(key), int | float) and isinstance(e.get("epoch"), int | float)]
        if points and (keep_zeros or key == "train_loss" or key.startswith("monitor_")
                       or any(y != 0 for _, y in points)):
            out.append(Series(label, points, style))
    return out


def head_text(record: dict[str, Any], progress: dict[str, Any], width: int = HEAD_WIDTH) -> Text:
    status = str(record.get("status", "?"))
    text = Text.assemble((printable(record.get("id", "?")), "bold"), "  ", (status, STATUS_STYLE.get(status, "")))
    text.append(f"  {describe(record, progress)[0] if status in ACTIVE else ''}".rstrip())
    where = record.get("slot") or record.get("device")
    what = [str(record.get("variant") or ""), f"seed {record.get('seed')}" if record.get("seed") is not None else "",
            str(record.get("dataset") or ""), f"preset {record.get('preset')}" if record.get("preset") else "",
            str(where or "")]
    text.append("\n" + printable(" · ".join(part for part in what if part)), style="dim")
    metrics, counts = record.get("metrics") or {}, record.get("metrics_n") or {}
    if metrics:
        text.append(final_text(metrics, counts, width))
    elif monitor := monitor_text(record.get("last") or {}):
        text.append(monitor)
    if note := chance_note(record):
        text.append(f"\n{CHANCE_MARK} {note}", style="bold red")
    if record.get(DAMAGED):
        text.append(f"\ndamaged: {printable(record[DAMAGED])}", style="magenta")
    elif not metrics and record.get("error"):
        text.append(f"\n{printable(record['error'])}", style="red")
    if record.get("select", "last") != "last" and record.get("selected_epoch"):
        text.append(f"\nweights of epoch {record['selected_epoch']} ({record['select']}, training hold-out)",
                    style="dim")
    details = [d for d in record.get("flag_details") or [] if isinstance(d, dict)]
    for detail in details:
        text.append(f"\n⚠ {detail.get('name')}: ", style="bold yellow")
        text.append("; ".join(str(r) for r in detail.get("reasons", [])) + f" (rule: {detail.get('rule', '')})")
    # flags without details here (the sanity checks' check_*: their numbers are on the Robustness tab)
    others = [str(f) for f in record.get("flags") or [] if f not in {d.get("name") for d in details}]
    if others:
        text.append("\n⚠ " + ", ".join(others), style="bold yellow")
    return text


def final_text(metrics: dict[str, Any], counts: dict[str, Any], width: int = HEAD_WIDTH) -> Text:
    """The final metrics on one line of ``width`` cells: the table labels, the narrow ones (core/metrics.py) where
    those do not fit, and a break between two metrics (never inside one) where even they do not."""
    sizes = sorted({str(counts.get(k, "?")) for k in FINAL if k in metrics})
    lead = f"final (n={'/'.join(sizes)}):"
    for labels in (METRIC_LABELS, METRIC_SHORT_LABELS):
        items = []
        for key in (k for k in FINAL if k in metrics):
            item = Text.assemble((f" {labels[key]} ", "dim"), (f"{metrics[key]:.2f}", "bold"))
            if key == "A_AA" and len(sizes) > 1:
                item.append(f" (n={counts.get(key, '?')})", style="dim")
            items.append(item)
        if len(lead) + sum(len(i) for i in items) <= width:
            break
    text, line = Text(f"\n{lead}", style="dim"), len(lead)
    for item in items:
        if line + len(item) > width:
            text.append("\n")
            item, line = item[1:], 0
        text.append(item)
        line += len(item)
    return text


def monitor_text(last: dict[str, Any]) -> Text | None:
    """The last epoch's monitor estimates (before the final evaluation), or None when there are none."""
    values = [(key, last[f"monitor_{key}"]) for key in MONITOR if isinstance(last.get(f"monitor_{key}"), int | float)]
    if not values:
        return None
    text = Text(f"\nlast epoch (monitor estimate, epoch {last.get('epoch', '?')}):", style="dim")
    for key, value in values:
        text.append(f" {METRIC_LABELS[key]} ", style="dim")
        text.append(f"~{value:.2f}")
    return text


def config_table(config: dict[str, Any] | None, changed: dict[str, Any]) -> Table | Text:
    if not isinstance(config, dict):
        return Text("config.json not found" if config is None else "config.json does not hold an object", style="red")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="cyan")
    table.add_column()
    for key, value in config.items():
        mark = " *" if key in changed else ""
        table.add_row(key + mark, Text(repr(value) if isinstance(value, str) else str(value),
                                       style="bold yellow" if mark else ""))
    return table


class DetailScreen(Screen):
    BINDINGS = [
        BACK,
        *tab_keys(("curves", "Curves"), ("log", "Log"), ("config", "Config"), ("pca", "PCA"),
                  ("robustness", "Robustness")),
        Binding("p", "compute_pca", "Compute PCA"),
    ]
    app: DashboardApp
    # The last read of the run folder; watch_detail draws it (always: even a repeat brings new log lines).
    detail: reactive[RunDetail | None] = reactive(None, always_update=True, init=False, repaint=False)

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield Static(Text(self.run_id, style="bold"), id="detail-head")
        with TabbedContent(initial="curves"):
            with TabPane("Curves", id="curves"):
                with Vertical():
                    yield LineChart("loss", id="loss-chart")
                    yield LineChart("accuracy % (monitor)", id="acc-chart")
                    yield LineChart("triplets: share active, D to mined negative", id="triplet-chart")
            with TabPane("Log", id="log"):
                # wrapped, not cut: a traceback's long line must be readable at 80 columns
                yield RichLog(max_lines=2000, wrap=True, markup=False, highlight=False, min_width=20,
                              id="log-view")
            with TabPane("Config", id="config"):
                with VerticalScroll():
                    yield Static("loading…", id="config-view")
            with TabPane("PCA", id="pca"):
                yield PcaView(id="pca-view")
            with TabPane("Robustness", id="robustness"):
                with Vertical():
                    yield LineChart("accuracy % vs ε", id="curve-chart", x_name="ε",
                                    empty=f"no curve yet: `amltui eval {self.run_id} --curve` computes it")
                    yield Static(id="robustness-view")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.pca_busy = False
        self.reader = DetailReader(self.app.runs_dir, self.run_id)
        self.poll()
        self.set_interval(self.app.detail_interval, self.poll)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    @work(thread=True, group="detail", exclusive=True, exit_on_error=False)
    def poll(self) -> None:
        """Read the run folder in a thread; a newer poll replaces one still under way."""
        if self.reader.lock.locked():
            return  # a read is under way: the next tick reads (no threads pile up behind a slow read)
        with self.reader.lock:  # one read at a time (the log tail moves on each), delivered in order
            if get_current_worker().is_cancelled:
                return  # a newer poll waits behind this one: it reads instead (the log tail has not moved)
            try:
                detail = self.reader.read()
                head = head_text(detail.record, detail.progress, max(self.size.width - 2, 40))
            except Exception as exc:  # an odd file must not freeze the screen: say so, and poll again later
                reason = f"cannot read the run folder: {type(exc).__name__}: {exc}"
                detail = RunDetail(damaged_record(self.run_id, reason), {}, [], [], None, None)
                head = Text.assemble((self.run_id, "bold"), "  ", (DAMAGED, "bold magenta"), f"\n{reason}")
            self.post_message(DetailLoaded(detail, head))

    @on(DetailLoaded)
    def _loaded(self, message: DetailLoaded) -> None:
        self.query_one("#detail-head", Static).update(message.head)
        self.detail = message.detail

    def watch_detail(self, old: RunDetail | None, detail: RunDetail) -> None:
        record = detail.record
        epochs_total = record.get("epochs") if isinstance(record.get("epochs"), int) else None
        self.query_one("#loss-chart", LineChart).plot(epoch_series(detail.epochs, LOSSES), epochs_total)
        self.query_one("#acc-chart", LineChart).plot(epoch_series(detail.epochs, ACCURACIES), epochs_total)
        triplets = epoch_series(detail.epochs, TRIPLETS, keep_zeros=True)
        chart = self.query_one("#triplet-chart", LineChart)
        chart.display = bool(triplets)
        chart.plot(triplets, epochs_total)
        log = self.query_one("#log-view", RichLog)
        for line in detail.new_log:  # verbatim: a log line is never markup, its control characters are escaped
            log.write(Text(printable(line)))
        if old is None:  # the config does not change while the run exists: drawn once
            self.query_one("#config-view", Static).update(
                config_table(detail.config, record.get("config_diff") or {}))
        self.query_one("#curve-chart", LineChart).plot(curve_series(detail.curve))
        self.query_one("#robustness-view", Static).update(robustness_text(record, detail.curve, self.run_id))
        if (old is None or detail.pca != old.pca) and not self.pca_busy:
            self.query_one("#pca-view", PcaView).show(pca_view(detail.pca, self.run_id))

    def action_compute_pca(self) -> None:
        """Compute the PCA figure in a child process (as `amltui plot RUN --pca`) and show it when done."""
        if self.pca_busy:
            return
        self.pca_busy = True
        self.query_one(TabbedContent).active = "pca"
        self.pca_started, self.pca_step, self.pca_steps = time.monotonic(), "starting…", []
        self.pca_timer = self.set_interval(1.0, self._show_pca_step)  # the seconds keep counting within a step
        self._show_pca_step()
        self._compute_pca()

    def _show_pca_step(self) -> None:
        seconds = time.monotonic() - self.pca_started
        self.query_one("#pca-view", PcaView).show(Text.assemble(
            ("computing the PCA figure", "bold"), f" ({seconds:.0f} s so far)\n", self.pca_step))

    @work(thread=True, group="pca", exclusive=True, exit_on_error=False)
    def _compute_pca(self) -> None:
        """`python -P -m amltui.app.science.pca` in a child process: torch never enters the dashboard (it would stay
        resident, hundreds of MB, until quit), and -P keeps the user's cwd off the child's import path."""
        try:
            self.pca_process = proc = start_pca(Path(self.app.runs_dir), self.run_id)
        except OSError as exc:
            self.post_message(PcaStage("", done=True, error=f"cannot start the PCA process: {exc}"))
            return
        steps, other = 0, []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(STAGE_PREFIX):
                steps += 1
                self.post_message(PcaStage(f"step {steps}/3: {line[len(STAGE_PREFIX):]}…"))
            elif line.strip():
                other.append(line)
        code = proc.wait()
        errors = [line[len(ERROR_PREFIX):] for line in other if line.startswith(ERROR_PREFIX)]
        if code == 0 and any(line.startswith(DONE_PREFIX) for line in other):
            self.post_message(PcaStage("", done=True))
        elif errors:
            self.post_message(PcaStage("", done=True, error=errors[-1]))
        else:  # killed, or it died before it could say why: its last words and its exit status
            said = " / ".join(other[-3:])
            self.post_message(PcaStage("", done=True, error=f"the PCA process ended with status {code}"
                                       + (f": {said}" if said else "")))

    def on_unmount(self) -> None:
        """Leaving the screen stops a PCA still under way (our own child: the Popen we started)."""
        proc = getattr(self, "pca_process", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()

    @on(PcaStage)
    def _pca_stage(self, message: PcaStage) -> None:
        if not message.done:
            self.pca_step = message.text
            self.pca_steps.append(message.text)
            self._show_pca_step()
            return
        view = self.query_one("#pca-view", PcaView)
        seconds = time.monotonic() - self.pca_started
        self.pca_timer.stop()
        self.pca_busy = False
        if message.error:
            view.show(Text.assemble(("the PCA figure could not be computed: ", "bold red"), message.error,
                                      "\n", (f"press p to try again; `amltui plot {self.run_id} --pca` does the "
                                             "same on the command line", "dim")))
            return
        self.notify(f"pca.png and pca.json written in {seconds:.0f} s", title=self.run_id, markup=False)
        view.show(pca_view(self.reader.path / "pca.json", self.run_id))


def start_pca(runs_dir: Path, run_id: str) -> subprocess.Popen[str]:
    """The PCA child process (amltui/app/science/pca.py), its stdout and stderr as one text pipe."""
    return subprocess.Popen([*PYTHON, "-m", "amltui.app.science.pca", "--runs-dir",
                             os.path.abspath(runs_dir), run_id], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace")


def pca_view(path: Path | None, run_id: str) -> Any:
    """The PCA tab: pca.json's content (PcaView draws it), or how to make it."""
    how = (f"Press p to compute it here.\n`amltui plot {run_id} --pca` does the same on the command line (pca.png "
           "and pca.json in the run folder).")
    if path is None:
        return f"No PCA embedding for this run yet. {how}"
    if path.suffix != ".json":
        return f"Only the PNG is there ({path}); {how}"
    try:
        data = read_json(path)  # bounded, and a FIFO in its place is refused
        render_pca(data)  # drawable: the keys and points are there (a damaged file is said here, not in render)
        return data
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        return f"{path} cannot be drawn ({exc}); {how}"


CURVE_STYLES = ("cyan", "red", "yellow", "magenta", "green")


def _curve_label(curve: dict[str, Any], attack: str) -> str:
    """The stored label, but an AutoAttack key without counts ('aa-standard') is the 10-iteration ensemble of
    records from before full strength: say so (core/aa_spec.py legacy_components)."""
    if attack.startswith("aa-") and "@" not in attack:
        return short_aa_label({"version": attack[3:]})
    return str(curve["labels"].get(attack, attack))


def curve_series(curve: dict[str, Any] | None) -> list[Series]:
    """The run's curve.json as chart series (x = ε)."""
    if not curve:
        return []
    try:
        return [Series(_curve_label(curve, a), [(float(e), float(v)) for e, v in zip(curve["grid"], accs,
                                                                                            strict=True)
                                                         if v is not None],  # AutoAttack: only at asked ε
                       CURVE_STYLES[i % len(CURVE_STYLES)]) for i, (a, accs) in enumerate(curve["curves"].items())]
    except (KeyError, TypeError, ValueError, AttributeError):
        return []


def robustness_text(record: dict[str, Any], curve: dict[str, Any] | None, run_id: str) -> Text:
    """A_AA's breakdown and the sanity checks' results (or how to compute them), for the Robustness tab."""
    text = Text()
    if curve:  # without one, the chart above says how to make it
        text.append(f"curve on n={curve.get('n')} test images; ", style="dim")
    aa = record.get("autoattack")
    if aa:
        broken = ", ".join(f"{k} {v}" for k, v in (aa.get("broken_by") or {}).items())
        text.append(f"A_AA {aa.get('percent', float('nan')):.2f}% ({describe_aa(aa)}): broken by {broken or '–'}\n")
    checks = record.get("checks")
    if checks:
        for r in checks.get("results", []):
            passed = r.get("passed")
            text.append({True: "pass ", False: "FAIL ", None: "n/a  "}[passed],
                        style={True: "green", False: "bold red", None: "dim"}[passed])
            text.append(f"{r.get('label')}: {r.get('message')}\n")
    else:
        text.append(f"No sanity checks yet: `amltui eval {run_id} --checks`.", style="dim")
    return text
