"""The launch form: variants × grid × seeds with a preset, data, overrides and devices, queued via the CLI's launcher.

It reopens with the values last launched from the same runs folder (amltui/tui/screens/launch_values.py).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Button, Input, Label, Select, Static

from amltui.app.runs.store import StoreError
from amltui.app.runs.sweeps import needs_confirmation
from amltui.tui.actions import (
    ActionError,
    LaunchRequest,
    LaunchResult,
    check_devices,
    launch,
    parse_seeds,
    resolve_configs,
)
from amltui.tui.screens.dialog import Dialog
from amltui.tui.screens.launch_values import FormValues, check_overrides, load_values, save_values, subset_value
from amltui.tui.widgets.tickbox import TickBox
from core.config import CHOICES, PRESET_VALUES, PRESETS, VARIANTS, ConfigError

ERROR_LINES = 5  # an error longer than this is cut: the form's buttons must stay on screen


class LaunchScreen(Dialog[LaunchResult | None]):
    DEFAULT_CSS = """
    LaunchScreen {
        #form {
            grid-size: 2;
            grid-columns: 11 1fr;
            grid-rows: 1;
            grid-gutter: 0 1;
            height: auto;
            margin: 0;
        }

        #variants, #subsets {
            height: 1;
        }

        #variants TickBox {
            margin-right: 2;
        }

        #subsets Input {
            width: 1fr;
            margin-right: 1;
        }

        #form-error {
            height: auto;
            max-height: 5;
            color: $text-error;
        }
    }
    """
    BINDINGS = [
        Binding("escape", "dismiss_form", "Close"),
        Binding("ctrl+s", "launch", "Launch"),
    ]
    busy: reactive[bool] = reactive(False, init=False, repaint=False)  # queueing: the form waits (watch_busy)

    def __init__(self, runs_dir: Path) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        # The form as it was when a large sweep was asked about (amltui/app/runs/sweeps.py CONFIRM_ABOVE): the next
        # Launch queues only these very values. Keyed by the run count alone, keys typed after the question
        # (epochs=12 → epochs=1200, a fast burst then Ctrl+S) were queued without being asked about.
        self.confirmed: tuple[FormValues, str] | None = None

    def compose(self) -> ComposeResult:
        last = load_values(self.runs_dir)
        self.preset = _choice(last.preset, PRESETS, "quick")
        with Vertical(id="dialog"):
            yield Static("[b]Launch runs[/b]  (variants × grid × seeds; Ctrl+S launches, Esc closes)")
            with Grid(id="form"):
                yield from self._what_fields(last)
                yield from self._how_fields(last)
            yield Static(id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Launch", id="launch", variant="primary", compact=True)
                yield Button("Close", id="close", compact=True)

    def _what_fields(self, last: FormValues) -> ComposeResult:
        """What to train: variants, seeds, preset, the data."""
        yield Label("variants")
        with Horizontal(id="variants"):
            for variant in VARIANTS:
                yield TickBox(variant, value=variant in last.variants, id=f"v-{variant}", compact=True)
        yield Label("seeds")
        yield Input(last.seeds, placeholder="0,1,2 or 0-2", id="seeds", compact=True)
        yield Label("preset")
        yield Select([(p, p) for p in PRESETS], value=self.preset, allow_blank=False, id="preset", compact=True)
        yield Label("dataset")
        yield Select([(d, d) for d in CHOICES["dataset"]], value=_choice(last.dataset, CHOICES["dataset"],
                                                                          "mnist-sample"),
                     allow_blank=False, id="dataset", compact=True)
        yield Label("data dir")
        yield Input(last.data_dir, placeholder="folder of the idx files [default: the download cache]",
                    id="data-dir", compact=True)
        yield Label("subsets")
        with Horizontal(id="subsets"):  # labels of their own: a placeholder goes once a field is filled
            yield Label("train ")
            yield Input(last.train_subset, placeholder="all", id="train-subset", compact=True, type="integer")
            yield Label("test ")
            yield Input(last.test_subset, placeholder="all", id="test-subset", compact=True, type="integer")

    def _how_fields(self, last: FormValues) -> ComposeResult:
        """How: overrides, the grid, devices, repeats."""
        yield Label("overrides")
        yield Input(last.overrides, placeholder="key=value … e.g. epochs=4 lr=3e-4", id="overrides", compact=True)
        yield Label("grid")
        yield Input(last.grid, placeholder="KEY=V1,V2 … e.g. lambda_ia=0.25,0.5,1 lr=1e-4:1e-2:log:3", id="grid",
                    compact=True)
        yield Label("sweep")
        yield Input(placeholder="sweep name [default: generated with a grid]", id="sweep", compact=True)
        yield Label("gpus")
        yield Input(last.gpus, placeholder="all visible; auto; 'none' = CPU; 0,1", id="gpus", compact=True)
        yield Label("cpu slots")
        yield Input(last.cpu_slots, placeholder="default (1 per 8 cores)", id="cpu-slots", compact=True,
                    type="integer")
        yield Label("repeat")
        yield TickBox("run again even if an identical finished run exists", value=last.repeat, id="repeat",
                      compact=True)

    def _text(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def values(self) -> FormValues:
        """The form as typed (what the next form on this runs folder reopens with)."""
        return FormValues(
            variants=[v for v in VARIANTS if self.query_one(f"#v-{v}", TickBox).value],
            seeds=self._text("seeds"), preset=str(self.query_one("#preset", Select).value),
            dataset=str(self.query_one("#dataset", Select).value), data_dir=self._text("data-dir"),
            train_subset=self._text("train-subset"), test_subset=self._text("test-subset"),
            overrides=self._text("overrides"), grid=self._text("grid"), gpus=self._text("gpus"),
            cpu_slots=self._text("cpu-slots"), repeat=self.query_one("#repeat", TickBox).value)

    def request(self) -> LaunchRequest:
        """The form's values; raises ActionError on the first invalid one."""
        values = self.values()
        if values.cpu_slots and (not values.cpu_slots.isdigit() or int(values.cpu_slots) < 1):
            raise ActionError("cpu slots: a whole number ≥ 1 (or empty for the default)")
        try:
            data = {"data_dir": values.data_dir or None,
                    "train_subset": subset_value("train subset", values.train_subset),
                    "test_subset": subset_value("test subset", values.test_subset)}
            overrides = values.overrides.split()
            check_overrides(overrides, {key for key, value in data.items() if value is not None})
        except ConfigError as exc:
            raise ActionError(str(exc)) from None
        return LaunchRequest(
            variants=values.variants,
            seeds=parse_seeds(values.seeds),
            preset=values.preset,
            dataset=values.dataset,
            overrides=[f"{key}={value}" for key, value in data.items() if value is not None] + overrides,
            gpus=values.gpus or None,
            cpu_slots=int(values.cpu_slots) if values.cpu_slots else None,
            repeat=values.repeat,
            grid=values.grid.split(),
            sweep=self._text("sweep") or None,
        )

    @on(Select.Changed, "#preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        # A preset may name its data (paper: the full MNIST); the form follows, and the user may still change it.
        # Only a change by the user: the Changed of the remembered preset must keep the remembered dataset.
        if str(event.value) == self.preset:
            return
        self.preset = str(event.value)
        dataset = PRESET_VALUES.get(self.preset, {}).get("dataset", "mnist-sample")
        self.query_one("#dataset", Select).value = dataset

    def show_error(self, text: str) -> None:
        """One short error (verbatim, never markup); a long one is cut so the buttons stay on screen."""
        lines = text.splitlines()
        if len(lines) > ERROR_LINES:
            lines = [*lines[: ERROR_LINES - 1], "… (`amltui config-keys` lists every key)"]
        self.query_one("#form-error", Static).update(Text.assemble(("✗ ", "bold red"), "\n".join(lines))
                                                     if text else "")

    def action_launch(self) -> None:
        if self.busy:
            return
        try:
            request = self.request()
            n = len(resolve_configs(request))  # config errors show here, before anything is created
            check_devices(request)
        except ActionError as exc:
            self.show_error(str(exc))
            return
        asked = (self.values(), self._text("sweep"))
        if needs_confirmation(n) and self.confirmed != asked:  # a large sweep: a second Ctrl+S, nothing changed
            self.confirmed = asked
            self.show_error(f"{n} runs (sweep {request.sweep}): press Launch / Ctrl+S again to queue them all as "
                            "shown (a change to the form asks again)")
            return
        self.busy = True
        self.query_one("#form-error", Static).update(f"checking the data, then queueing {n} run(s)…")
        self._launch(request, self.values())

    def watch_busy(self, busy: bool) -> None:
        self.query_one("#launch", Button).disabled = busy

    @work(thread=True, group="launch", exclusive=True, exit_on_error=False)
    def _launch(self, request: LaunchRequest, values: FormValues) -> None:
        try:
            result = launch(self.runs_dir, request)  # the service checks the data first (preflight), then queues
        except (ActionError, StoreError, OSError) as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # unexpected: still report it in the form
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        try:
            save_values(self.runs_dir, values)
        except (OSError, ValueError):
            pass  # remembering the form is a convenience: the runs are queued all the same
        self.app.call_from_thread(self.dismiss, result)

    def _failed(self, text: str) -> None:
        self.busy = False
        self.show_error(text)

    def action_dismiss_form(self) -> None:
        if not self.busy:
            self.dismiss(None)

    @on(Button.Pressed, "#launch")
    def _launch_pressed(self) -> None:
        self.action_launch()

    @on(Button.Pressed, "#close")
    def _close_pressed(self) -> None:
        self.action_dismiss_form()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_launch()


def _choice(value: str, options: tuple[str, ...] | list[str], default: str) -> str:
    """A remembered Select value, or the default when it is no longer one of the options."""
    return value if value in options else default
