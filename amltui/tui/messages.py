"""The dashboard's own messages: each carries what a thread worker read back to the UI thread.

Workers never touch widgets; they post one of these and the screen's handler applies it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.message import Message

if TYPE_CHECKING:
    from amltui.app.gpus import Gpu
    from amltui.app.results.report import Row
    from amltui.tui.data import RunDetail, RunsSnapshot


class RunsLoaded(Message):
    """A poll of the store finished; ``snapshot`` is None when nothing had changed."""

    def __init__(self, snapshot: RunsSnapshot | None) -> None:
        super().__init__()
        self.snapshot = snapshot


class GpusLoaded(Message):
    """A GPU inventory read finished (the GPUs amltui would schedule on)."""

    def __init__(self, gpus: list[Gpu]) -> None:
        super().__init__()
        self.gpus = gpus


class DetailLoaded(Message):
    """One run's folder was read; ``head`` is the screen's header, built off the UI thread."""

    def __init__(self, detail: RunDetail, head: Text) -> None:
        super().__init__()
        self.detail = detail
        self.head = head


class ResultsLoaded(Message):
    """The seed-aggregated rows (None: the index did not change, or could not be read: then ``error``)."""

    def __init__(self, rows: list[Row] | None, error: str | None = None) -> None:
        super().__init__()
        self.rows = rows
        self.error = error



class PcaStage(Message):
    """The PCA worker of the detail screen began a step (``text``) or ended (``done``; ``error`` when it failed)."""

    def __init__(self, text: str, done: bool = False, error: str | None = None) -> None:
        super().__init__()
        self.text = text
        self.done = done
        self.error = error


class CompareLoaded(Message):
    """The compare screen's runs were read (amltui.tui.screens.compare.RunCurves, in selection order)."""

    def __init__(self, runs: list) -> None:
        super().__init__()
        self.runs = runs
