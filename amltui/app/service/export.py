"""Results tables (`amltui export`, the dashboard's export key) and the robustness measurements of `amltui eval`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amltui.app.errors import UserError
from amltui.app.fsutil import atomic_write_bytes
from amltui.app.results.curves import aa_spec, write_curve_png
from amltui.app.results.frontier import plot_sweep
from amltui.app.results.report import FORMATS, aggregate, render
from amltui.app.results.sweep_table import sweep_table
from amltui.app.runs.filters import FilterError, apply_where, check_group_by, parse_where
from amltui.app.runs.store import Store
from amltui.app.runs.sweeps import GridError, sweep_records
from amltui.app.service.manage import records


def results_table(rows_of: list[dict[str, Any]], fmt: str = "md", *, where: list[str] | None = None,
                  group_by: str | None = None, with_runs: bool = False, sweep: str | None = None,
                  runs_dir: Path | None = None) -> tuple[str, str | None]:
    """The seed-aggregated table of the records that match ``where`` (key=value) — or, with ``sweep``, that
    sweep's table, a row per grid point (amltui/app/results/sweep_table.py); (its text, a note when the filters left no
    run)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}", f"choose one of: {', '.join(FORMATS)}")
    try:
        filters = parse_where(where or [], rows_of)
        keys = check_group_by(group_by, rows_of) if group_by is not None else None
    except FilterError as exc:
        raise UserError(str(exc)) from None
    kept, emptied = apply_where(rows_of, filters)
    for key in {"tag", "tags"} & set(keys or []):  # a row per combination of tags: no run is counted twice
        kept = [{**r, key: ",".join(sorted(r.get("tags") or [])) or "(none)"} for r in kept]
    if sweep:
        return _sweep_table(kept, fmt, sweep, runs_dir, with_runs), emptied
    return render(aggregate(kept, group_by=keys), fmt, with_runs=with_runs), emptied


def _sweep_table(records: list[dict[str, Any]], fmt: str, sweep: str, runs_dir: Path | None,
                 with_runs: bool) -> str:
    try:
        return sweep_table(*sweep_records(records, Path(runs_dir or "."), sweep), fmt, sweep, with_runs=with_runs)
    except GridError as exc:
        raise UserError(str(exc)) from None


def sweep_frontier(records: list[dict[str, Any]], runs_dir: Path, sweep: str | None, x: str, y: str,
                   interval: str, out: Path | None) -> tuple[Any, Path]:
    """A sweep's frontier (amltui/app/results/frontier.py): its points and the PNG written."""
    try:
        return plot_sweep(records, runs_dir, sweep, x, y, interval, out)
    except ValueError as exc:  # GridError, FrontierError: unknown sweep or metric, no point yet
        raise UserError(str(exc)) from None


def export_results(store: Store, when: dt.datetime | None = None) -> Path:
    """Write the seed-aggregated table (as `amltui export`, Markdown) to <runs_dir>/results-<time>.md."""
    text, _ = results_table(records(store))
    stamp = (when or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = store.runs_dir / f"results-{stamp}.md"
    n = 1
    while path.exists() or path.is_symlink():
        path = store.runs_dir / f"results-{stamp}-{n}.md"
        n += 1
    atomic_write_bytes(path, text.encode("utf-8"))  # never through a link planted meanwhile (docs/reliability.md)
    return path


@dataclass
class RobustnessRequest:
    """`amltui eval --autoattack / --curve / --checks`: what to measure and how."""

    autoattack: bool = False
    curve: bool = False
    checks: bool = False
    subset: int | None = None
    grid: list[float] | None = None
    pgd_steps: int | None = None
    restarts: int = 1
    device: str | None = None
    aa_eps: list[float] | None = None  # ε values where the curve runs AutoAttack [default: ε_s]
    aa_version: str | None = None  # instead of the run's aa_version, for this evaluation


def check_aa_version(text: str) -> str:
    """The canonical AutoAttack version of ``--aa-version``, or a UserError naming the choices."""
    from core.aa_spec import parse_aa_version

    try:
        return parse_aa_version(text)[0]
    except ValueError as exc:
        raise UserError(f"--aa-version: {exc}", "see `amltui config-keys` (aa_version) or docs/robustness.md") from None


def parse_grid(text: str, option: str = "--eps-grid") -> list[float]:
    """'0,0.1,0.3' → sorted distinct ε values in [0, 1]."""
    fix = "give comma-separated numbers in [0, 1] (pixel units), e.g. 0,0.1,0.2,0.3"
    try:
        grid = sorted({round(float(p), 6) for p in text.split(",") if p.strip()})
    except ValueError:
        raise UserError(f"{option} {text!r}: not a list of numbers", fix) from None
    if not grid or grid[0] < 0 or grid[-1] > 1:
        raise UserError(f"{option} {text!r}: ε values are in pixel units of [0, 1] images", fix)
    return grid


def measure_robustness(store: Store, run_id: str, request: RobustnessRequest, listener: Any = None,
                       confirm: Callable[[str], None] | None = None) -> dict:
    """A_AA, the accuracy-vs-ε curve (curve.json, curve.png) and the sanity checks, as asked; the record.

    Before measuring, an evaluation projected over ``robustness.CONFIRM_OVER_S`` seconds is put to ``confirm``
    (with the estimate as text), which raises to stop it; None measures without asking.
    """
    from amltui.app.science import robustness
    from amltui.app.science.robustness import (
        CurveSpec,
        compute_curve,
        open_evaluator,
        record_autoattack,
        record_checks,
    )
    from core.robustness import default_grid

    ev = open_evaluator(store, run_id, device=request.device, subset=request.subset, listener=listener)
    if request.aa_version:
        ev.config = ev.config.replace(aa_version=check_aa_version(request.aa_version))
    cfg = ev.config
    record = ev.rd.read_record()
    grid = sorted({*(request.grid or default_grid(cfg.eps_s)), *(request.aa_eps or [])})
    spec = CurveSpec(grid, request.pgd_steps or cfg.pgd_steps, request.restarts,
                     autoattack=request.autoattack or cfg.eval_aa or bool(request.aa_eps), aa_eps=request.aa_eps)
    if confirm is not None:
        projected = robustness.estimate(ev, _planned(ev, request, spec))
        if projected.seconds > robustness.CONFIRM_OVER_S:
            confirm(projected.text(ev.n))
    if request.autoattack:
        record = record_autoattack(store, ev)
    if request.curve or request.checks:
        data = compute_curve(ev, spec)
        write_curve_png(data, ev.rd.path / "curve.png",
                        f"{run_id}: {cfg.variant}, seed {cfg.seed}, {cfg.dataset} (ε_s={cfg.eps_s:g})")
    if request.checks:
        record = record_checks(store, ev, spec)
    return record


def _planned(ev: Any, request: RobustnessRequest, spec: Any) -> list[tuple[str, float]]:
    """Every (attack, ε) the request measures (cached ones included; the estimate skips them)."""
    from amltui.app.science.robustness import checks_measurements, curve_measurements

    cfg = ev.config
    plan = [(aa_spec(cfg.aa_version), cfg.eps_s)] if request.autoattack else []
    plan += curve_measurements(cfg, spec) if request.curve or request.checks else []
    return plan + (checks_measurements(cfg, spec) if request.checks else [])
