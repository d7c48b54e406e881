"""`amltui reproduce`, the whole sequence: plan → invariance sets → requeue / queue → run → human-labelled sets,
curves, AutoAttack → report folder. The front end only draws: it gives a ``ReproduceFront`` that prints, shows
progress and runs (or follows) the runs; the pieces live in amltui/app/reproduce.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from amltui.app.errors import UserError
from amltui.app.records import Status
from amltui.app.service.launch import ConfigRequest, DispatchOptions, preflight, queue_runs, resolve_configs
from amltui.app.service.manage import reap_lost
from amltui.app.store import Store
from core.config import VARIANTS, RunConfig

Listener = Callable[[str, dict[str, Any]], None]


@dataclass
class ReproduceRequest(DispatchOptions, ConfigRequest):
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    detach: bool = False  # queue and return; a later call writes the report
    human_sets: bool = False
    human_sets_dir: Path | None = None
    curves: bool = False
    autoattack: bool = False
    out: Path | None = None  # report folder [default: <runs-dir>/reports/reproduce-<dataset>-<preset>]
    command: str = "amltui reproduce"  # written into the report


class ReproduceFront(Protocol):
    """What the sequence needs from a front end."""

    def say(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def progress(self) -> AbstractContextManager[Listener]: ...

    def run(self, store: Store, ids: list[str], request: ReproduceRequest) -> int:
        """Dispatch queued runs (foreground unless request.detach); an exit code, 0 if all finished."""
        ...

    def wait(self, store: Store, ids: list[str]) -> int:
        """Follow runs started elsewhere until they end; an exit code."""
        ...


def check_request(request: ReproduceRequest) -> list[RunConfig]:
    """Every check before anything is written; the configs (variants × seeds)."""
    request.check()
    if request.out is not None and request.out.exists() and not request.out.is_dir():
        raise UserError(f"--out {request.out} is a file", "give a folder for the report")
    configs = resolve_configs(request)
    if request.human_sets or request.human_sets_dir:
        from core.domains import human_sets_refusal

        refusal = human_sets_refusal(configs[0].dataset)
        if refusal:
            raise UserError(f"--human-sets: {refusal}")
    preflight(configs, request)
    return configs


def reproduce(store: Store, request: ReproduceRequest, front: ReproduceFront,
              configs: list[RunConfig] | None = None) -> tuple[Path | None, int]:
    """Run the sequence; (the report, or None when detached; the exit code of the runs)."""
    from amltui.app.reproduce import plan
    from amltui.app.runs import requeue

    configs = configs or check_request(request)
    reap_lost(store)
    todo = plan(store, configs)
    front.say(f"{len(configs)} runs: {len(todo.reuse)} finished (reused), {len(todo.resume)} to resume, "
              f"{len(todo.wait)} queued or running, {len(todo.create)} to start")
    # The invariance sets are made once, here, before any worker needs them (workers would race to make them).
    if todo.create or todo.resume:
        make_invariance_sets(store, configs, front)
    for run_id in todo.resume:
        requeue(store, run_id)
    to_run = todo.resume + (queue_runs(store, todo.create) if todo.create else [])
    code = front.run(store, to_run, request) if to_run else 0
    if todo.wait and not request.detach:
        code = front.wait(store, todo.wait) or code
    if request.detach:
        front.say("runs queued; rerun this command when they have finished to write the report")
        return None, code
    all_ids = todo.reuse + todo.wait + to_run
    score_human_sets(store, all_ids, request, front)
    measure_curves(store, all_ids, request, front)
    return write(store, all_ids, request, configs[0].dataset), code


def make_invariance_sets(store: Store, configs: list[RunConfig], front: ReproduceFront) -> None:
    from amltui.app.runs import invariance_for, load_run_data
    from core.device import resolve_device, set_threads

    first = configs[0]
    set_threads(first.threads)
    try:
        data = load_run_data(first)
    except Exception as exc:  # DataNotFoundError and friends: say it before queueing anything
        raise UserError(str(exc)) from None
    splits = (["train"] if any(c.needs_invariance for c in configs) else []) + (["test"] if first.eval_ia else [])
    with front.progress() as listener:
        for split in splits:
            invariance_for(first, data, split, store.runs_dir, resolve_device(first.device), listener)


def _done(store: Store, ids: Iterable[str]) -> Iterable[dict[str, Any]]:
    for run_id in ids:
        record = store.get(run_id)
        if record and record.get("status") == Status.DONE:
            yield record


def score_human_sets(store: Store, ids: list[str], request: ReproduceRequest, front: ReproduceFront) -> None:
    from amltui.app.runs import evaluate_human_sets

    if not (request.human_sets or request.human_sets_dir):
        return
    for record in _done(store, ids):
        if "human_sets" not in record:
            try:
                evaluate_human_sets(store, record["id"], from_dir=request.human_sets_dir)
            except FileNotFoundError as exc:
                front.warn(f"human-labelled sets skipped: {exc}")
                return


def measure_curves(store: Store, ids: list[str], request: ReproduceRequest, front: ReproduceFront) -> None:
    """Each finished run's accuracy-vs-ε curve and/or A_AA (cached in the run folders)."""
    if not (request.curves or request.autoattack):
        return
    from amltui.app.robustness import CurveSpec, compute_curve, open_evaluator, record_autoattack
    from core.errors import TrainingFailed
    from core.robustness import default_grid

    with front.progress() as listener:
        for record in list(_done(store, ids)):
            try:
                ev = open_evaluator(store, record["id"], listener=listener)
            except (TrainingFailed, OSError, ValueError) as exc:  # a damaged checkpoint: skip this run, say why
                front.warn(f"{record['id']}: no curve or A_AA: {exc}")
                continue
            if request.autoattack and "A_AA" not in (record.get("metrics") or {}):
                record_autoattack(store, ev)
            if request.curves:
                compute_curve(ev, CurveSpec(default_grid(ev.config.eps_s), ev.config.pgd_steps,
                                            autoattack=request.autoattack or ev.config.eval_aa))


def write(store: Store, ids: list[str], request: ReproduceRequest, dataset: str) -> Path:
    from amltui.app.reproduce import write_report

    folder = request.out or store.runs_dir / "reports" / f"reproduce-{dataset}-{request.preset}"
    return write_report(store, ids, folder, request.command)
