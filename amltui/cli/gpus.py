"""`amltui gpus`: the GPUs amltui sees, as `--gpus` will count them, with who is using them."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from amltui.app.gpus import GpuError, Thresholds, Visible, busy_reason, describe_use, inventory, visible_gpus
from amltui.cli.common import console, err, user_errors
from amltui.cli.help_text import Command
from amltui.cli.options import AsJson


def register(app: typer.Typer) -> None:
    app.command("gpus", cls=Command)(gpus)


def _gib(mib: float | None) -> str:
    return "?" if mib is None else f"{mib / 1024:.1f}"


def gpus(
    as_json: AsJson = False,
    gpu_max_util: Annotated[float | None, typer.Option(help="Utilisation (%) from which a GPU is busy.")] = None,
    gpu_max_mem: Annotated[float | None, typer.Option(help="Memory used by others (%) from which a GPU is busy.")]
    = None,
) -> None:
    """List the visible GPUs: --gpus position, name, UUID, memory, utilisation, other people's processes."""
    with user_errors():
        limits = Thresholds.from_env(gpu_max_util, gpu_max_mem)
    inv = inventory()
    try:
        visible = visible_gpus(inv)
        problem = ""
    except GpuError as exc:  # e.g. an ambiguous index: still show the GPUs, so the user can fix the setting
        visible = Visible([g for g in inv.gpus if not g.mig_mode], note=str(exc))
        problem = str(exc)
    env = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
    if as_json:
        typer.echo(json.dumps({"source": inv.source, "problem": inv.problem or visible.note, **env,
                               "gpus": [{"position": k, "label": g.label, "busy": busy_reason(g, limits),
                                         **asdict(g)} for k, g in enumerate(visible.gpus)]}, indent=1))
        return
    settings = ", ".join(f"{k}={v!r}" if v is not None else f"{k} unset" for k, v in env.items())
    if not visible.gpus:
        why = visible.note or inv.problem or "none found"
        console.print(f"no GPU visible ({escape(why)}); runs use CPU slots. {escape(settings)}", highlight=False)
        return
    if problem:
        err.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
        console.print("[dim]all GPUs of this machine:[/]")
    console.print(_table(visible, limits, numbered=not problem))
    if problem:
        raise typer.Exit(2)
    console.print(f"[dim]source {inv.source}; {escape(settings)}; --gpus auto skips GPUs at ≥ {limits.max_util:g}% "
                  f"utilisation or ≥ {limits.max_mem:g}% memory used by others[/]", highlight=False)
    if visible.note:
        console.print(f"[yellow]note:[/] {escape(visible.note)}", highlight=False)


def _table(visible: Visible, limits: Thresholds, numbered: bool) -> Table:
    """One row per GPU; without ``numbered`` (visibility unresolved) no --gpus position is claimed."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for title in ("--gpus", "gpu", "name", "uuid", "mem GiB", "util", "state", "used by (others)"):
        table.add_column(title, no_wrap=title not in ("used by (others)", "state"),
                         justify="right" if title in ("--gpus", "mem GiB", "util") else "left")
    for k, g in enumerate(visible.gpus):
        reason = busy_reason(g, limits)
        table.add_row(str(k) if numbered else "-", g.label, escape(g.name), g.uuid,
                      f"{_gib(g.memory_used)}/{_gib(g.memory_total)}",
                      "?" if g.utilization is None else f"{g.utilization:.0f}%",
                      f"[yellow]busy: {escape(reason)}[/]" if reason else "[green]free[/]",
                      escape(describe_use(g)))
    return table
