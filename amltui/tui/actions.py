"""What the dashboard does to runs: launch, cancel, resume, delete, export. Blocking; call from workers.

Launching goes through the CLI's own launcher (``amltui.cli.lifecycle.dispatch`` with ``detach=True``): a
background scheduler process that outlives the dashboard.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from amltui.app.store import Store, StoreError


class ActionError(RuntimeError):
    """An action the user asked for cannot be done; the message says why."""


@dataclass
class LaunchRequest:
    variants: list[str]
    seeds: list[int]
    preset: str = "quick"
    dataset: str = "mnist-sample"
    overrides: list[str] = field(default_factory=list)
    gpus: str | None = None  # None = all visible, "none" = CPU only, "auto", "0,1" (positions)
    cpu_slots: int | None = None
    slots_per_gpu: int = 1
    repeat: bool = False  # start fresh runs even where an identical finished run exists
    grid: list[str] = field(default_factory=list)  # KEY=V1,V2 / ranges (amltui/app/sweeps.py)
    sweep: str | None = None  # the sweep's name [default: generated when there is a grid]


@dataclass
class LaunchResult:
    queued: list[str] = field(default_factory=list)  # new run ids
    reused: list[str] = field(default_factory=list)  # one message per identical finished run reused instead

    def message(self) -> str:
        parts = [f"queued {len(self.queued)} run(s): {', '.join(self.queued)}"] if self.queued else []
        return "\n".join(parts + self.reused) or "nothing to launch"


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
    from amltui.app.sweeps import GridError, resolve_sweep
    from core.config import ConfigError, RunConfig

    if not request.variants:
        raise ActionError("variants: pick at least one")

    def resolve(variant: str, seed: int, point: list[str]) -> RunConfig:
        return RunConfig.resolve(variant, request.preset, overrides=[*request.overrides, *point], seed=seed,
                                 dataset=request.dataset)

    try:  # variants × grid points × seeds; the sweep's name is fixed here, once
        configs, request.sweep = resolve_sweep(request.variants, request.seeds, request.grid, request.overrides,
                                               request.sweep, resolve)
    except (GridError, ConfigError) as exc:
        raise ActionError(str(exc)) from None
    return configs


def check_devices(request: LaunchRequest) -> None:
    from amltui.app.executors.local import make_slots
    from amltui.app.gpus import parse_gpu_spec, parse_slots

    try:
        parse_gpu_spec(request.gpus)
        parse_slots(request.slots_per_gpu)
        make_slots([], 1, request.cpu_slots or 1)
    except ValueError as exc:
        raise ActionError(str(exc)) from None


def _dispatch(store: Store, ids: list[str], request: LaunchRequest) -> None:
    from amltui.app.executors.control import start_local

    try:
        start_local(store, ids, gpus=request.gpus, slots_per_gpu=request.slots_per_gpu, cpu_slots=request.cpu_slots)
    except (ValueError, OSError) as exc:
        raise ActionError(f"the launcher refused the runs: {exc}") from None


def launch(runs_dir: Path, request: LaunchRequest) -> LaunchResult:
    """Create queued runs for the request and hand them to a detached scheduler.

    As `amltui run`: a (variant, seed) with an identical finished run (same config, seed, data, code) is reused
    with a message instead of queued again, unless ``request.repeat``.
    """
    configs = resolve_configs(request)
    check_devices(request)
    from amltui.app.reuse import find_identical, reuse_message
    from amltui.app.runs import RunFailure, create_runs
    from amltui.app.sweeps import record as record_sweep

    store = Store(runs_dir)
    result = LaunchResult()
    try:
        reused = {} if request.repeat else find_identical(store.all(), configs)
    except RunFailure as exc:
        raise ActionError(str(exc)) from None
    result.reused = [reuse_message(configs[i], record) for i, record in reused.items()]
    try:  # one index write for all; a failure leaves no run behind
        fresh = [config for i, config in enumerate(configs) if i not in reused]
        result.queued = [r["id"] for r in create_runs(store, fresh, sweep=request.sweep)] if fresh else []
        record_sweep(runs_dir, request.sweep, request.grid, [r["id"] for r in reused.values()] + result.queued)
    except (StoreError, OSError, ValueError) as exc:
        raise ActionError(f"could not create the run: {exc}") from None
    if result.queued:
        _dispatch(store, result.queued, request)
    return result


def _record(store: Store, run_id: str) -> dict:
    record = store.get(run_id)
    if record is None:
        raise ActionError(f"run {run_id} is no longer in the index")
    return record


def cancel(runs_dir: Path, run_id: str) -> str:
    from amltui.app.executors.control import cancel_run

    store = Store(runs_dir)
    return f"{run_id}: {cancel_run(store, _record(store, run_id))}"


def resume(runs_dir: Path, run_id: str) -> str:
    """Queue a failed or cancelled run again and start a detached scheduler for it (as `amltui resume`)."""
    from amltui.app.runs import requeue

    store = Store(runs_dir)
    status = _record(store, run_id).get("status")
    if status not in ("failed", "cancelled", "orphaned"):
        raise ActionError(f"{run_id} is {status}; only failed, cancelled or orphaned runs can be resumed")
    if requeue(store, run_id) is None:
        raise ActionError(f"{run_id} changed status meanwhile; try again")
    _dispatch(store, [run_id], LaunchRequest(variants=[], seeds=[]))
    return f"{run_id}: queued again; it continues from its last checkpoint"


def delete(runs_dir: Path, run_id: str) -> str:
    store = Store(runs_dir)
    status = _record(store, run_id).get("status")
    if status in ("queued", "running", "stalled"):
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
    from amltui.app.report import aggregate, render

    store = Store(runs_dir)
    from amltui.app.records import inspect_all

    text = render(aggregate(inspect_all(store.all(), runs_dir)), "md")
    stamp = (when or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = Path(runs_dir) / f"results-{stamp}.md"
    n = 1
    while path.exists():
        path = Path(runs_dir) / f"results-{stamp}-{n}.md"
        n += 1
    path.write_text(text, encoding="utf-8")
    return path
