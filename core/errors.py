"""Errors a user can act on, importable without torch (the CLI catches them to print a clear message)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DataNotFoundError(FileNotFoundError):
    """The idx files of a dataset are not where they were looked for (and could not be downloaded)."""

    def __init__(self, message: str, folder: Path | None = None, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.folder = folder
        self.missing = tuple(missing)

    def __str__(self) -> str:
        return str(self.args[0])


class TrainingFailed(RuntimeError):
    """The run cannot go on (e.g. a non-finite loss); the message says why and what to try."""
