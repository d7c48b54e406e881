"""The GPU strip of the runs screen: per visible GPU its utilisation, memory and the runs on it (nvtop in brief).

Two GPUs to a line at 80 columns, at most MAX_LINES lines; hidden when there is no GPU. The inventory is read
in a thread worker of the screen (amltui.app.gpus.inventory), never on the UI thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from textual.reactive import reactive
from textual.widgets import Static

from amltui.app.gpus import Gpu, GpuError, Inventory, visible_gpus
from amltui.app.runs.records import Status
from amltui.app.safetext import markup_safe

MAX_LINES = 3
CELL = 38  # columns per GPU: two fit in 80
BAR = " ▁▂▃▄▅▆▇█"


def runs_by_gpu(records: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Running runs per GPU label (the record's ``gpu``, else its slot name 'gpu2#1' → 'gpu2')."""
    found: dict[str, list[str]] = {}
    for r in records:
        if r.get("status") != Status.RUNNING:
            continue
        label = r.get("gpu") or (str(r.get("slot") or "").split("#")[0] if str(r.get("slot") or "").startswith(
            "gpu") else "")
        if label:
            found.setdefault(label, []).append(str(r.get("id")))
    return found


def shown_gpus(inv: Inventory) -> list[Gpu]:
    """What amltui would schedule on: the visible GPUs, or every GPU if CUDA_VISIBLE_DEVICES is ambiguous."""
    try:
        return visible_gpus(inv).gpus
    except GpuError:
        return [g for g in inv.gpus if not g.mig_mode]


def gpu_cell(gpu: Gpu, runs: list[str], width: int = CELL) -> str:
    util = gpu.utilization
    level = BAR[min(8, round(util / 100 * 8))] if util is not None else " "
    util_text = f"{util:3.0f}%" if util is not None else "  ?%"
    colour = "red" if (util or 0) >= 80 else "yellow" if (util or 0) >= 20 else "green"
    used, total = gpu.memory_used, gpu.memory_total
    mem = f"{used / 1024:.0f}/{total / 1024:.0f}G" if used is not None and total else "?G"
    head = f"{gpu.label} {util_text}{level} {mem}"
    room = width - len(head) - 2
    names = ",".join(runs) if runs else "-"
    if len(names) > room:
        names = names[:max(0, room - 1)] + "…"
    text = f"[b]{markup_safe(gpu.label)}[/b] [{colour}]{util_text}{level}[/] {mem} [dim]{markup_safe(names)}[/]"
    return text + " " * max(0, width - len(head) - 1 - len(names))


def render_strip(gpus: list[Gpu], runs: Mapping[str, list[str]], width: int) -> str:
    per_line = max(1, width // CELL)
    cells = [gpu_cell(g, runs.get(g.label, [])) for g in gpus]
    lines = [" ".join(cells[k:k + per_line]).rstrip() for k in range(0, len(cells), per_line)]
    if len(lines) > MAX_LINES:
        hidden = len(gpus) - per_line * (MAX_LINES - 1)
        lines = lines[:MAX_LINES - 1] + [f"[dim]+{hidden} more GPUs (amltui gpus)[/]"]
    return "\n".join(lines)


class GpuStrip(Static):
    DEFAULT_CSS = """
    GpuStrip {
        height: auto;
        max-height: 3;
        padding: 0 1;
        display: none;
    }
    """
    # What the strip shows; watch_text redraws only when it changes (an unchanged update costs a layout pass).
    text: reactive[str] = reactive("", init=False, repaint=False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gpus: list[Gpu] = []
        self.runs: dict[str, list[str]] = {}

    def show(self, gpus: list[Gpu], runs: Mapping[str, list[str]]) -> None:
        self.gpus, self.runs = list(gpus), dict(runs)
        self.display = bool(self.gpus)
        self.text = render_strip(self.gpus, self.runs, self.app.size.width - 2) if self.gpus else ""

    def watch_text(self, text: str) -> None:
        self.update(text)
