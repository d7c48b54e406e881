"""One live Rich progress line per run, fed by the store and each worker's progress.json."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.text import Text

from amltui.app.fsutil import read_json
from amltui.app.runs.outcomes import at_chance
from amltui.app.runs.records import DAMAGED, TERMINAL, UNSTARTED, Status, inspect, parse_time
from amltui.app.runs.folders import run_dir
from amltui.app.runs.store import Store


def read_progress(store: Store, run_id: str) -> dict[str, Any]:
    try:
        return read_json(run_dir(store.runs_dir, run_id).path / "progress.json")  # a FIFO is refused, not waited on
    except (OSError, ValueError):
        return {}


def describe(record: dict[str, Any], progress: dict[str, Any]) -> tuple[str, float, float]:
    """(text, completed, total) of a run's current phase; a malformed progress.json or record never raises."""
    try:
        return _describe(record, progress if isinstance(progress, dict) else {})
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError):
        status = str(record.get("status", "?")) if isinstance(record, dict) else "?"
        return (f"{status} (progress unreadable)", 0, 1)


def _describe(record: dict[str, Any], progress: dict[str, Any]) -> tuple[str, float, float]:
    status = record.get("status", "?")
    if status in TERMINAL:
        metrics = record.get("metrics") or {}
        shown = "".join(f"  {k} {metrics[k]:.2f}" for k in ("A_orig", "A_SA", "A_PGD") if k in metrics)
        chance = "  (at chance: learned nothing)" if at_chance(record) else ""
        text = status + (shown + chance if "A_orig" in metrics else f"  {record.get('error') or ''}")
        return text, 1, 1
    kind = progress.get("kind")
    if status in UNSTARTED:
        return str(status), 0, 1
    if status == Status.STALLED:
        return "stalled (worker paused or hung; see `amltui show`)", 0, 1
    if kind == "batch":
        b = progress["batch"]
        total = b["steps"] * b["epochs"]
        done = (b["epoch"] - 1) * b["steps"] + b["step"]
        return f"epoch {b['epoch']}/{b['epochs']} batch {b['step']}/{b['steps']}  loss {b['loss']:.4f}", done, total
    if kind == "epoch":
        e = progress["epoch"]
        return f"epoch {e['epoch']}/{e['epochs']} done", e["epoch"], e["epochs"]
    if kind in ("invariance", "eval"):
        d = progress[kind]
        what = f"invariance {d['split']}" if kind == "invariance" else f"eval {d['metric']}"
        return what, d["done"], d["total"]
    if kind == "phase":  # a long phase has started and has not reported a step yet
        return PHASE_NAMES.get(progress["phase"]["phase"], "starting") + _split(progress["phase"]), 0, 1
    return "starting", 0, 1


# What the worker's phases (amltui/app/science/execution.py _Execution.enter) are called in the live views and `ls`.
PHASE_NAMES = {"invariance": "invariance", "train": "training", "eval": "evaluation", "autoattack": "AutoAttack"}
SHORT_NAMES = {"invariance": "inv", "eval": "eval", "autoattack": "AA"}


def _split(data: dict[str, Any]) -> str:
    return f" {data['split']}" if data.get("split") else ""


def phase_progress(progress: dict[str, Any]) -> str | None:
    """A running run's phase with its own progress when it is not training (`inv 120/1000`, `eval A_PGD 3/10`),
    for `ls`; None while it trains (the epoch says it) or when progress.json says nothing usable."""
    try:
        kind = progress.get("kind")
        if kind == "phase":
            phase = progress["phase"]["phase"]
            return SHORT_NAMES[phase] + _split(progress["phase"]) if phase in SHORT_NAMES else None
        if kind not in ("invariance", "eval"):
            return None
        d = progress[kind]
        what = "inv" + (" test" if d.get("split") == "test" else "") if kind == "invariance" else f"eval {d['metric']}"
        return f"{what} {int(d['done'])}/{int(d['total'])}"
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def phase_of(record: dict[str, Any], progress: dict[str, Any]) -> str:
    """Which phase a run is in, from its status and the phase event of progress.json (not from display text):
    "train" for every batch and epoch, one name per invariance split, evaluated metric or started phase."""
    if record.get("status") != Status.RUNNING:
        return str(record.get("status"))
    try:
        kind = progress.get("kind")
        if kind in ("batch", "epoch"):
            return "train"
        if kind == "invariance":
            return f"invariance {progress['invariance'].get('split')}"
        if kind == "eval":
            return f"eval {progress['eval'].get('metric')}"
        if kind == "phase":
            return f"phase {progress['phase'].get('phase')}{_split(progress['phase'])}"
    except (KeyError, TypeError, AttributeError):
        pass
    return "starting"


def duration(record: dict[str, Any], now: float | None = None) -> str | None:
    """How long the run has worked (started → ended, or → ``now`` while it runs) as ``1h02m``/``3m05s``/``12s``;
    None when it has not started or the times are unreadable."""
    start = parse_time(record.get("started"))
    end = parse_time(record.get("ended")) if record.get("ended") else now
    if start is None or end is None or end < start:
        return None
    seconds = int(end - start)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def clock_text(seconds: float | None) -> str:
    """0:07, 12:05, 1:02:03 (a duration in a live line); "?" when not known yet."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Line(ProgressColumn):
    """The phase's text, then its labelled clock ("epoch 3/8 loss 0.1234  elapsed 0:12 ETA 1:05"); for an ended
    run its whole duration instead (a just-reset phase would read ``0:00:00 0:00:00``). One column, so a long
    text in one row does not push every row's clock past 80 columns."""

    def render(self, task: Task) -> Text:
        if task.fields.get("ended"):
            took = task.fields.get("took")
            clock = f"took {took}" if took else ""
        else:
            remaining = task.time_remaining if task.total and task.completed < task.total else None
            clock = f"elapsed {clock_text(task.elapsed or 0)} ETA {clock_text(remaining)}"
        text = Text(task.description)  # verbatim: it may quote a stored error
        text.append(f"  {clock}" if clock else "", style="progress.elapsed")
        return text


def live_text(text: str, record: dict[str, Any]) -> str:
    """A phase's text as a live line shows it, narrow enough for 80 columns with the run id: single spaces, no
    batch count (the bar shows it): 'epoch 3/8 loss 0.1234'. An ended run says its status (and why it did not
    finish, or that it is at chance): its metrics follow in the table printed at the end."""
    if record.get("status") in TERMINAL:
        chance = " (at chance: learned nothing)" if at_chance(record) else ""
        error = f"  {record.get('error')}" if record.get("error") and record.get("status") != Status.DONE else ""
        return f"{record.get('status')}{chance}{error}"
    text = " ".join(text.split())
    return re.sub(r" batch \d+/\d+", "", text) if text.startswith("epoch ") else text


BAR_WIDTH = 6  # the run id (~29) + the text with its clock (~42) leave this much of 80 columns


class LiveRuns:
    """Context manager drawing the runs' progress; call ``refresh()`` on every scheduler tick."""

    def __init__(self, console: Console, store: Store, run_ids: Sequence[str]) -> None:
        self.store = store
        self.run_ids = list(run_ids)
        self.progress = Progress(  # id, a short bar and the text with its clock fit 80 columns
            TextColumn("{task.fields[run]}", style="bold", markup=False),
            BarColumn(bar_width=BAR_WIDTH),
            _Line(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}
        self.phase: dict[str, str] = {}

    def __enter__(self) -> LiveRuns:
        self.progress.__enter__()
        for run_id in self.run_ids:
            self.tasks[run_id] = self.progress.add_task(Status.QUEUED.value, total=1, run=run_id, ended=False,
                                                        took=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh()
        self.progress.__exit__(*exc)

    def refresh(self) -> list[dict[str, Any]]:
        records = {r["id"]: inspect(r) for r in self.store.all() if r["id"] in self.tasks}
        for run_id, task in self.tasks.items():
            record = records.get(run_id, {"status": "?"})
            progress = read_progress(self.store, run_id)
            text, done, total = describe(record, progress)
            text = live_text(text, record)
            phase = phase_of(record, progress)
            if self.phase.get(run_id) != phase:  # a new phase: restart the task so its ETA is its own
                self.phase[run_id] = phase
                self.progress.reset(task, total=total, completed=done, description=text)
            ended = record.get("status") in TERMINAL
            self.progress.update(task, completed=done, total=total, description=text, ended=ended,
                                 took=duration(record) if ended else None)
        return list(records.values())

    def all_ended(self, records: list[dict[str, Any]]) -> bool:
        # orphaned: its scheduler died, nothing will start it (amltui.app.executors.liveness)
        return len(records) == len(self.tasks) and all(r.get("status") in (*TERMINAL, Status.ORPHANED, DAMAGED)
                                                       for r in records)
