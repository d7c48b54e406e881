"""The colour of each run status, one table for both front ends (Rich styles: the command line's tables and the
dashboard's cells use the same names). Torch-free and Textual-free: importing it costs nothing."""

from __future__ import annotations

from amltui.app.runs.records import Status

STATUS_STYLE: dict[str, str] = {
    Status.DONE: "green", Status.RUNNING: "bold cyan", Status.STALLED: "bold magenta", Status.QUEUED: "white",
    Status.ORPHANED: "magenta", Status.FAILED: "bold red", Status.CANCELLED: "yellow", Status.DAMAGED: "bold magenta",
}


def status_style(status: str) -> str:
    """The style of a status; white for one this version does not know (a record written by another amltui)."""
    return STATUS_STYLE.get(status, "white")
