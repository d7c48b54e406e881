"""`amltui reproduce`, the whole sequence: plan → invariance sets → requeue / queue → run → human-labelled sets,
curves, AutoAttack → report folder. The front end only draws: it gives a ``ReproduceFront`` that prints, shows
progress and runs (or follows) the runs; the pieces live in amltui/app/results/reproduce.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from amltui.app.errors import UserError
from amltui.app.results.reproduce import plan, report_folder_name, write_report
from amltui.app.runs.records import Status
from amltui.app.runs.states import requeue
from amltui.app.runs.store import Store
from amltui.app.service.launch import ConfigRequest, DispatchOptions, preflight, queue_runs, resolve_configs
from amltui.app.service.manage import reap_lost
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
    # A report must not call a model robust on PGD alone: checks (a), (c), (d) and A_AA run by default, on
    # `robust_subset` stratified test images per run (cached in the run folder: a rerun recomputes nothing).
    autoattack: bool = True
    robust_checks: bool = True
    robust_subset: int = 200
    out: Path | None = None  # report folder [default: <runs-dir>/reports/<report_folder_name(configs)>]
    command: str = "amltui reproduce"  # written into the report


class ReproduceFront(Protocol):
    """What the sequence needs from a front end."""

    def say(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def confirm(self, text: str) -> None:
        """Say that a step will take long (``text``); raise UserError to stop, return to go on."""
        ...

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
    if request.robust_subset < 1:
        raise UserError(f"--robust-subset {request.robust_subset}: the checks need at least one test image",
                        "give a positive number of images, e.g. --robust-subset 200, or --no-robust-checks")
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
    measure_robustness(store, all_ids, request, front)
    measure_curves(store, all_ids, request, front)
    return write(store, all_ids, request, configs), code


def make_invariance_sets(store: Store, configs: list[RunConfig], front: ReproduceFront) -> None:
    from amltui.app.science.execution import invariance_for
    from amltui.app.science.loading import load_run_data
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
    from amltui.app.science.evaluation import evaluate_human_sets

    if not (request.human_sets or request.human_sets_dir):
        return
    for record in _done(store, ids):
        if "human_sets" not in record:
            try:
                evaluate_human_sets(store, record["id"], from_dir=request.human_sets_dir)
            except FileNotFoundError as exc:
                front.warn(f"human-labelled sets skipped: {exc}")
                return


def measure_robustness(store: Store, ids: list[str], request: ReproduceRequest, front: ReproduceFront) -> None:
    """Checks (a), (c), (d) and A_AA of each finished run on ``request.robust_subset`` images (cached).

    A run already checked on its current checkpoint (e.g. the full `eval --checks`) keeps its checks, and a run
    with A_AA keeps it: only what is missing is measured.
    """
    if not (request.robust_checks or request.autoattack):
        return
    from amltui.app.science.robustness import record_autoattack, record_cheap_checks

    with front.progress() as listener:
        asked = False
        todo = list(_done(store, ids))
        for i, record in enumerate(todo):
            ev = _evaluator(store, record["id"], front, listener, subset=request.robust_subset)
            if ev is None:
                continue
            checks = request.robust_checks and (record.get("checks") or {}).get("checkpoint") != ev.ckpt
            aa = request.autoattack and "A_AA" not in (record.get("metrics") or {})
            if not asked and (checks or aa):  # once, before the first measurement: the whole step's projection
                asked = True
                _confirm_if_long(ev, checks, aa, len(todo) - i, front)
            if checks:
                record_cheap_checks(store, ev)
            if aa:
                record_autoattack(store, ev)


def _confirm_if_long(ev: Any, checks: bool, aa: bool, runs: int, front: ReproduceFront) -> None:
    """Put the step's projected time to the front end when it is over robustness.CONFIRM_OVER_S: this run's
    estimate (the cost model of `eval`) times the runs left, which share its architecture and subset."""
    from amltui.app.science import robustness

    cfg = ev.config
    plan = [("fgsm", cfg.eps_s)] if checks else []
    pgd = robustness.pgd_spec(cfg.pgd_steps, 1, cfg.seed)
    plan += [(pgd, cfg.eps_s), (f"square-{robustness.SQUARE_QUERIES}", cfg.eps_s),
             (pgd, robustness.LARGE_EPS)] if checks else []
    plan += [(robustness.aa_spec(cfg.aa_version), cfg.eps_s)] if aa else []
    one = robustness.estimate(ev, plan)
    if one.seconds * runs > robustness.CONFIRM_OVER_S:
        front.confirm(f"the robustness checks and A_AA of {runs} run(s) are projected to take about "
                      f"{robustness.fmt_duration(one.seconds * runs)} ({one.text(ev.n)} per run)")


def measure_curves(store: Store, ids: list[str], request: ReproduceRequest, front: ReproduceFront) -> None:
    """Each finished run's accuracy-vs-ε curve (cached in the run folders)."""
    if not request.curves:
        return
    from amltui.app.science.robustness import CurveSpec, compute_curve
    from core.robustness import default_grid

    with front.progress() as listener:
        for record in list(_done(store, ids)):
            ev = _evaluator(store, record["id"], front, listener)
            if ev is None:
                continue
            # AutoAttack at every ε of the grid only where the run asks for it (eval_aa): A_AA at ε_s is measured
            # by measure_robustness, on the cheap subset
            compute_curve(ev, CurveSpec(default_grid(ev.config.eps_s), ev.config.pgd_steps,
                                        autoattack=ev.config.eval_aa))


def _evaluator(store: Store, run_id: str, front: ReproduceFront, listener: Any, **kw: Any) -> Any:
    """The run's evaluator, or None with a warning when its checkpoint is damaged: that run loses its curve,
    checks and A_AA, not the report."""
    from amltui.app.science.robustness import open_evaluator
    from core.errors import TrainingFailed

    try:
        return open_evaluator(store, run_id, listener=listener, **kw)
    except (TrainingFailed, OSError, ValueError) as exc:
        front.warn(f"{run_id}: no curve, checks or A_AA: {exc}")
        return None


def write(store: Store, ids: list[str], request: ReproduceRequest, configs: list[RunConfig]) -> Path:
    from amltui.app.science.pca import write_pca

    folder = request.out or store.runs_dir / "reports" / report_folder_name(configs)
    return write_report(store, ids, folder, request.command, draw_pca=write_pca)
