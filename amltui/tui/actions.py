"""What the dashboard does to runs: launch, cancel, resume, delete, export. Blocking; call from workers.

Launching goes through the CLI's own launcher (``amltui.cli.launch.dispatch`` with ``detach=True``): a
background scheduler process that outlives the dashboard.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from amltui.store import Store, StoreError


class ActionError(RuntimeError):
    """An action the user asked for cannot be done; the message says why."""


@dataclass
class LaunchRequest:
    variants: list[str]
    seeds: list[int]
    preset: str = "quick"
    dataset: str = "mnist-sample"
    overrides: list[str] = field(default_factory=list)
    gpus: str | None = None  # None = detect, "none" = CPU only, "0,1"
    cpu_slots: int | None = None
    slots_per_gpu: int = 1


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        if "-" in part[1:]:  # a range like 0-2
            lo, hi = part.split("-", 1)
            if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
                raise ActionError(f"seeds: {part!r} is not a range like 0-2")
            new = list(range(int(lo), int(hi) + 1))
        elif part.isdigit():
            new = [int(part)]
        else:
            raise ActionError(f"seeds: {part!r} is not a whole number ≥ 0")
        seeds += [s for s in new if s not in seeds]
    if not seeds:
        raise ActionError("seeds: give at least one, e.g. 0 or 0,1,2 or 0-2")
    return seeds


def resolve_configs(request: LaunchRequest) -> list:
    """The RunConfigs of the request (cross product of variants × seeds); ConfigError → ActionError."""
    from core.config import ConfigError, RunConfig

    if not request.variants:
        raise ActionError("variants: pick at least one")
    configs = []
    for variant in request.variants:
        for seed in request.seeds:
            try:
                configs.append(RunConfig.resolve(variant, request.preset, overrides=request.overrides, seed=seed,
                                                 dataset=request.dataset))
            except ConfigError as exc:
                raise ActionError(str(exc)) from None
    return configs


def check_devices(request: LaunchRequest) -> None:
    from amltui.launch.local import make_slots, parse_gpus

    try:
        make_slots(parse_gpus(request.gpus) or [], request.slots_per_gpu, request.cpu_slots or 1)
    except ValueError as exc:
        raise ActionError(str(exc)) from None


def _dispatch(store: Store, ids: list[str], request: LaunchRequest) -> None:
    from amltui.launch.control import start_local

    try:
        start_local(store, ids, gpus=request.gpus, slots_per_gpu=request.slots_per_gpu, cpu_slots=request.cpu_slots)
    except (ValueError, OSError) as exc:
        raise ActionError(f"the launcher refused the runs: {exc}") from None


def launch(runs_dir: Path, request: LaunchRequest) -> list[str]:
    """Create queued runs for the request and hand them to a detached scheduler; returns their ids."""
    configs = resolve_configs(request)
    check_devices(request)
    from amltui.runs import create_runs

    store = Store(runs_dir)
    try:  # one index write for all; a failure leaves no run behind
        ids = [r["id"] for r in create_runs(store, configs)]
    except (StoreError, OSError, ValueError) as exc:
        raise ActionError(f"could not create the run: {exc}") from None
    _dispatch(store, ids, request)
    return ids


def _record(store: Store, run_id: str) -> dict:
    record = store.get(run_id)
    if record is None:
        raise ActionError(f"run {run_id} is no longer in the index")
    return record


def cancel(runs_dir: Path, run_id: str) -> str:
    from amltui.launch.control import cancel_run

    store = Store(runs_dir)
    return f"{run_id}: {cancel_run(store, _record(store, run_id))}"


def resume(runs_dir: Path, run_id: str) -> str:
    """Queue a failed or cancelled run again and start a detached scheduler for it (as `amltui resume`)."""
    from amltui.runs import requeue

    store = Store(runs_dir)
    status = _record(store, run_id).get("status")
    if status not in ("failed", "cancelled"):
        raise ActionError(f"{run_id} is {status}; only failed or cancelled runs can be resumed")
    if requeue(store, run_id) is None:
        raise ActionError(f"{run_id} changed status meanwhile; try again")
    _dispatch(store, [run_id], LaunchRequest(variants=[], seeds=[]))
    return f"{run_id}: queued again; it continues from its last checkpoint"


def delete(runs_dir: Path, run_id: str) -> str:
    store = Store(runs_dir)
    status = _record(store, run_id).get("status")
    if status in ("queued", "running"):
        raise ActionError(f"{run_id} is {status}; cancel it first")
    folder = Path(runs_dir) / run_id
    if folder.is_symlink():
        raise ActionError(f"{folder} is a symbolic link; amltui never deletes through a link (remove it yourself)")
    if folder.exists():
        shutil.rmtree(folder)
    store.remove(run_id)
    return f"removed {run_id} ({folder})"


def export_results(runs_dir: Path, when: dt.datetime | None = None) -> Path:
    """Write the seed-aggregated table (as `amltui export`, Markdown) to <runs_dir>/results-<time>.md."""
    from amltui.report import aggregate, render

    store = Store(runs_dir)
    from amltui.records import inspect_all

    text = render(aggregate(inspect_all(store.all(), runs_dir)), "md")
    stamp = (when or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = Path(runs_dir) / f"results-{stamp}.md"
    n = 1
    while path.exists():
        path = Path(runs_dir) / f"results-{stamp}-{n}.md"
        n += 1
    path.write_text(text, encoding="utf-8")
    return path
