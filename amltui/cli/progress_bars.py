"""Progress of a foreground run: Rich bars on a terminal, plain flushed lines when the output is piped.

A pipe or a file gets no bars (Rich draws nothing there until the end), so ``PlainRuns`` and ``RunProgress``
print one line per phase start and end (data, invariance sets, training, each epoch, evaluation, PGD).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from amltui.app.runs.folders import run_dir
from amltui.app.runs.progress import LiveRuns, describe, read_progress
from amltui.app.runs.records import TERMINAL, inspect
from amltui.app.runs.store import Store


def epoch_line(data: dict[str, Any]) -> str:
    """'epoch 2/8: loss 0.1234  A_orig 97.10  A_SA 80.00  (monitor subset)  12.3s' from an epoch event."""
    nan = float("nan")
    return (f"epoch {data['epoch']}/{data['epochs']}: loss {data.get('train_loss', nan):.4f}  "
            f"A_orig {data.get('monitor_A_orig', nan):.2f}  A_SA {data.get('monitor_A_SA', nan):.2f}  "
            + (f"A_PGD {data['monitor_A_PGD']:.2f}  " if "monitor_A_PGD" in data else "")
            + f"(monitor subset)  {data.get('seconds', 0):.1f}s")


def run_lines(console: Console, store: Store, run_ids: Sequence[str]) -> LiveRuns:
    """The foreground display of queued runs: live bars on a terminal, plain lines otherwise."""
    return LiveRuns(console, store, run_ids) if console.is_terminal else PlainRuns(console, store, run_ids)


def phase_lines(kind: str, data: dict[str, Any], seen: set[str]) -> list[str]:
    """'invariance train: 0/256' when a phase is first seen, '… done (256)' when its last step is; ``seen`` keeps
    what was already said."""
    what = f"invariance {data['split']}" if kind == "invariance" else f"eval {data['metric']}"
    lines = []
    if what not in seen:
        seen.add(what)
        lines.append(f"{what}: {data['done']}/{data['total']}")
    if data["done"] >= data["total"] and f"{what} done" not in seen:
        seen.add(f"{what} done")
        lines.append(f"{what} done ({data['total']})")
    return lines


class PlainRuns(LiveRuns):
    """LiveRuns for a pipe: on each refresh, prints (flushed) what changed since the last one, one line each."""

    def __init__(self, console: Console, store: Store, run_ids: Sequence[str]) -> None:
        super().__init__(console, store, run_ids)
        self.console = console
        self.tasks = dict.fromkeys(self.run_ids)  # all_ended counts them
        self.seen: dict[str, set[str]] = {run_id: set() for run_id in self.run_ids}
        self.epochs: dict[str, int] = dict.fromkeys(self.run_ids, 0)

    def __enter__(self) -> PlainRuns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh()

    def refresh(self) -> list[dict[str, Any]]:
        records = {r["id"]: inspect(r) for r in self.store.all() if r["id"] in self.tasks}
        for run_id in self.run_ids:
            if run_id in records:
                try:
                    lines = self._news(run_id, records[run_id])
                except (KeyError, TypeError, ValueError, AttributeError, OSError):  # half-written: next tick
                    continue
                for line in lines:
                    self.console.print(f"{run_id}: {line}", markup=False, highlight=False, soft_wrap=True)
                self.console.file.flush()
        return list(records.values())

    def _news(self, run_id: str, record: dict[str, Any]) -> list[str]:
        seen, status = self.seen[run_id], str(record.get("status", "?"))
        lines = [] if f"status {status}" in seen or status in TERMINAL else [status]
        seen.add(f"status {status}")
        if "n_train" in record and "data" not in seen:
            seen.add("data")
            lines.append(f"data loaded: {record['n_train']} train / {record['n_test']} test images")
        progress = read_progress(self.store, run_id)
        phases = [phase_lines(kind, progress[kind], seen) if isinstance(progress.get(kind), dict) else []
                  for kind in ("invariance", "eval")]
        before = progress.get("invariance", {}).get("split") == "train"  # the train set comes before the epochs
        lines += phases[0] if before else []
        epochs = [m for m in run_dir(self.store.runs_dir, run_id).read_metrics() if m.get("kind") == "epoch"]
        lines += [epoch_line(m) for m in epochs[self.epochs[run_id]:]]
        self.epochs[run_id] = max(self.epochs[run_id], len(epochs))
        lines += ([] if before else phases[0]) + phases[1]
        if status in TERMINAL and "end" not in seen:
            seen.add("end")
            lines.append(describe(record, {})[0])
        return lines


def clock_text(seconds: float) -> str:
    """'0:07', '12:05', '1:02:03'."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:" if hours else "") + (f"{rest // 60:02d}" if hours else f"{rest // 60}") + f":{rest % 60:02d}"


class PlainMeasurements:
    """Evaluation progress for a pipe: one line when a measurement ends ('eval FGSM ε=0.1: 100 images in 0:03'),
    and, during a long one, a line every ``every`` seconds with its elapsed time and ETA (a linear projection of
    the images done so far), so a 14-minute AutoAttack is not silent."""

    def __init__(self, say: Callable[[str], None], every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.say, self.every, self.clock = say, every, clock
        self.started: dict[str, float] = {}
        self.last_line: dict[str, float] = {}
        self.ended: set[str] = set()

    def on_eval(self, metric: str, done: int, total: int) -> None:
        now = self.clock()
        if metric not in self.started or (metric in self.ended and done < total):  # (re)started
            self.started[metric], self.last_line[metric] = now, now
            self.ended.discard(metric)
        if metric in self.ended:
            return
        elapsed = now - self.started[metric]
        if done >= total:
            self.ended.add(metric)
            self.say(f"eval {metric}: {total} images in {clock_text(elapsed)}")
        elif now - self.last_line[metric] >= self.every and done > 0:
            self.last_line[metric] = now
            eta = elapsed * (total - done) / done
            self.say(f"eval {metric}: {done}/{total} images, elapsed {clock_text(elapsed)}, ETA {clock_text(eta)}")


class RunProgress:
    """Turns the events of core.train / core.evaluate / invariance generation into progress bars (with labelled
    elapsed time and ETA), or, when the output is piped, into plain lines (one per measurement)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.seen: set[str] = set()
        self.plain = PlainMeasurements(self._say)

    def _say(self, line: str) -> None:
        self.progress.console.print(line, highlight=False, markup=False, soft_wrap=True)
        self.progress.console.file.flush()

    def __enter__(self) -> RunProgress:
        if self.progress.console.is_terminal:  # in a pipe, Rich would print every bar once more at the end
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.console.is_terminal:
            self.progress.__exit__(*exc)

    def _task(self, key: str, description: str, total: int) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total, info="")
        return self.tasks[key]

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "batch":
            total = data["steps"] * data["epochs"]
            task = self._task("train", "train", total)
            done = (data["epoch"] - 1) * data["steps"] + data["step"]
            self.progress.update(task, completed=done, description=f"epoch {data['epoch']}/{data['epochs']}",
                                 info=f"loss {data['loss']:.4f}")
        elif kind == "epoch":
            self.progress.console.print(epoch_line(data), highlight=False, markup=False)
        elif kind in ("invariance", "eval"):
            what = f"invariance {data['split']}" if kind == "invariance" else f"eval {data['metric']}"
            task = self._task(what, what, data["total"])
            self.progress.update(task, completed=data["done"], total=data["total"])
            if kind == "eval" and not self.progress.console.is_terminal:
                self.plain.on_eval(str(data["metric"]), int(data["done"]), int(data["total"]))
            elif not self.progress.console.is_terminal:  # no bars in a pipe: a line per phase start and end
                for line in phase_lines(kind, data, self.seen):
                    self.progress.console.print(line, highlight=False, markup=False)
                self.progress.console.file.flush()
