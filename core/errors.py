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


class DiskFullError(TrainingFailed):
    """A file could not be written for lack of space; the message names the folder and the space needed."""


def disk_full_message(path: Path, needed_bytes: int, what: str) -> str:
    """'no space left on <folder> writing <what> (needs ~N MB, M MB free); …' for a failed write."""
    import shutil

    try:
        free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return (f"no space left on {path.parent} writing {what} (needs ~{max(needed_bytes / 1e6, 0.1):.1f} MB, {free}); "
            "free some space (or move the runs folder with --runs-dir), then `amltui resume RUN` continues from "
            "the last complete checkpoint")
