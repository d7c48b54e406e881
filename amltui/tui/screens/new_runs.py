"""The launch form: variants × seeds with a preset, dataset, overrides and devices, queued via the CLI's launcher."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from amltui.app.store import StoreError
from amltui.app.sweeps import needs_confirmation
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
from core.config import CHOICES, PRESET_VALUES, PRESETS, VARIANTS


class LaunchScreen(Dialog[LaunchResult | None]):
    DEFAULT_CSS = """
    LaunchScreen {
        #form {
            grid-size: 2;
            grid-columns: 11 1fr;
            grid-rows: 1;
            grid-gutter: 0 1;
            height: auto;
            margin: 1 0 0 0;
        }

        #variants {
            height: 1;
        }

        #variants Checkbox {
            margin-right: 2;
        }

        #form-error {
            height: auto;
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
        self.confirmed = 0  # the run count a second Launch has confirmed (amltui/app/sweeps.py CONFIRM_ABOVE)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("[b]Launch runs[/b]  (variants × grid × seeds; Ctrl+S launches, Esc closes)")
            with Grid(id="form"):
                yield Label("variants")
                with Horizontal(id="variants"):
                    for variant in VARIANTS:
                        yield Checkbox(variant, value=variant == "ml_sa", id=f"v-{variant}", compact=True)
                yield Label("seeds")
                yield Input("0", placeholder="0,1,2 or 0-2", id="seeds", compact=True)
                yield Label("preset")
                yield Select([(p, p) for p in PRESETS], value="quick", allow_blank=False, id="preset", compact=True)
                yield Label("dataset")
                yield Select([(d, d) for d in CHOICES["dataset"]], value="mnist-sample", allow_blank=False,
                             id="dataset", compact=True)
                yield Label("overrides")
                yield Input(placeholder="key=value … e.g. epochs=4 lr=3e-4", id="overrides", compact=True)
                yield Label("grid")
                yield Input(placeholder="KEY=V1,V2 … e.g. lambda_ia=0.25,0.5,1 lr=1e-4:1e-2:log:3", id="grid",
                            compact=True)
                yield Label("sweep")
                yield Input(placeholder="sweep name [default: generated with a grid]", id="sweep", compact=True)
                yield Label("gpus")
                yield Input(placeholder="all visible; auto; 'none' = CPU; 0,1", id="gpus", compact=True)
                yield Label("cpu slots")
                yield Input(placeholder="default (1 per 8 cores)", id="cpu-slots", compact=True, type="integer")
                yield Label("repeat")
                yield Checkbox("run again even if an identical finished run exists", value=False, id="repeat",
                               compact=True)
            yield Static(id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Launch", id="launch", variant="primary", compact=True)
                yield Button("Close", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#seeds", Input).focus()

    def request(self) -> LaunchRequest:
        """The form's values; raises ActionError on the first invalid one."""
        variants = [v for v in VARIANTS if self.query_one(f"#v-{v}", Checkbox).value]
        slots_text = self.query_one("#cpu-slots", Input).value.strip()
        if slots_text and (not slots_text.isdigit() or int(slots_text) < 1):
            raise ActionError("cpu slots: a whole number ≥ 1 (or empty for the default)")
        return LaunchRequest(
            variants=variants,
            seeds=parse_seeds(self.query_one("#seeds", Input).value),
            preset=str(self.query_one("#preset", Select).value),
            dataset=str(self.query_one("#dataset", Select).value),
            overrides=self.query_one("#overrides", Input).value.split(),
            gpus=self.query_one("#gpus", Input).value.strip() or None,
            cpu_slots=int(slots_text) if slots_text else None,
            repeat=self.query_one("#repeat", Checkbox).value,
            grid=self.query_one("#grid", Input).value.split(),
            sweep=self.query_one("#sweep", Input).value.strip() or None,
        )

    @on(Select.Changed, "#preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        # A preset may name its data (paper: the full MNIST); the form follows, and the user may still change it.
        dataset = PRESET_VALUES.get(str(event.value), {}).get("dataset", "mnist-sample")
        self.query_one("#dataset", Select).value = dataset

    def show_error(self, text: str) -> None:
        self.query_one("#form-error", Static).update(f"[b red]✗[/] {text}" if text else "")

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
        if needs_confirmation(n) and self.confirmed != n:  # a large sweep: the second Ctrl+S confirms
            self.confirmed = n
            self.show_error(f"{n} runs (sweep {request.sweep}): press Launch / Ctrl+S again to queue them all")
            return
        self.busy = True
        self.query_one("#form-error", Static).update(f"queueing {n} run(s)…")
        self._launch(request)

    def watch_busy(self, busy: bool) -> None:
        self.query_one("#launch", Button).disabled = busy

    @work(thread=True, group="launch", exclusive=True, exit_on_error=False)
    def _launch(self, request: LaunchRequest) -> None:
        try:
            result = launch(self.runs_dir, request)
        except (ActionError, StoreError, OSError) as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # unexpected: still report it in the form
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
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
