"""Rich progress display for a foreground run: training, invariance generation and evaluation bars."""

from __future__ import annotations

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


class RunProgress:
    """Turns the events of core.train / core.evaluate / invariance generation into progress bars."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
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
            self.progress.console.print(
                f"epoch {data['epoch']}/{data['epochs']}: loss {data.get('train_loss', float('nan')):.4f}  "
                f"A_orig {data.get('monitor_A_orig', float('nan')):.2f}  "
                f"A_SA {data.get('monitor_A_SA', float('nan')):.2f}  "
                + (f"A_PGD {data['monitor_A_PGD']:.2f}  " if "monitor_A_PGD" in data else "")
                + "(monitor subset)  "
                + f"{data.get('seconds', 0):.1f}s",
                highlight=False,
            )
        elif kind == "invariance":
            task = self._task(f"inv-{data['split']}", f"invariance {data['split']}", data["total"])
            self.progress.update(task, completed=data["done"], total=data["total"])
        elif kind == "eval":
            task = self._task(f"eval-{data['metric']}", f"eval {data['metric']}", data["total"])
            self.progress.update(task, completed=data["done"], total=data["total"])
