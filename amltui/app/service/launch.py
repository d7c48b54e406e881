"""Launching runs: variants × seeds → configs, reuse of identical finished runs, queueing, handing to an executor.

Shared by `amltui run` / `amltui reproduce` and the dashboard's launch form: one seed syntax, one set of checks,
each made before anything is written (a refused request leaves no run behind).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from amltui.app.errors import RunFailure, UserError
from amltui.app.executors.control import start_local
from amltui.app.executors.slots import local_plan
from amltui.app.executors.slurm import SlurmExecutor
from amltui.app.gpus import parse_gpu_spec, parse_slots
from amltui.app.preflight import PreflightError, check_config
from amltui.app.runs import sweeps
from amltui.app.runs.folders import create_runs
from amltui.app.runs.records import Status, inspect_all
from amltui.app.runs.reuse import find_identical, reuse_message
from amltui.app.runs.states import set_status
from amltui.app.runs.store import Store, StoreError, validate_run_id
from core.config import ConfigError, RunConfig

EXECUTORS = ("local", "slurm")
# Stated maxima of one launch (docs/reliability.md), checked before anything is resolved or queued: a typo such as
# `--seeds 0-99999999` is refused at once instead of building a hundred million configs.
MAX_SEEDS = 1000
MAX_RUNS = 10_000  # variants × seeds × grid points
MAX_SLOTS = 1024  # --cpu-slots, --slots-per-gpu
MAX_SEED = 2**31 - 1  # core/config.py's bound of seed
SEEDS_HINT = (f"give whole numbers from 0 to {MAX_SEED} in ASCII digits, at most {MAX_SEEDS} of them, e.g. 0 or "
              "0,1,2 or 0-2 (ranges and lists mix: 0-2,5)")


def parse_seeds(text: str) -> list[int]:
    """'0,1,2', '0-2' and mixes ('0-2,5', spaces allowed) → [0, 1, 2, 5]: duplicates removed, order kept."""
    seeds: dict[int, None] = {}  # ordered and unique
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        if "-" in part[1:]:  # a range like 0-2
            lo, hi = part.split("-", 1)
            if not (_digits(lo) and _digits(hi)) or int(hi) < int(lo):
                raise UserError(f"seeds: {part!r} is not a range like 0-2", SEEDS_HINT)
            new = range(int(lo), int(hi) + 1)
        elif _digits(part):
            new = range(int(part), int(part) + 1)
        else:
            raise UserError(f"seeds: {part!r} is not a whole number ≥ 0", SEEDS_HINT)
        if new[-1] > MAX_SEED:
            raise UserError(f"seeds: {part!r} goes past the largest seed, {MAX_SEED}", SEEDS_HINT)
        if len(new) <= MAX_SEEDS:  # a range is sized before it is built
            seeds.update(dict.fromkeys(new))
        if len(new) > MAX_SEEDS or len(seeds) > MAX_SEEDS:
            raise UserError(f"seeds: {text.strip()!r} is more than {MAX_SEEDS} seeds", SEEDS_HINT)
    if not seeds:
        raise UserError("seeds: none given", SEEDS_HINT)
    return list(seeds)


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '٣' and '³', which int() reads as 3 (or refuses)."""
    return text.isascii() and text.isdigit()


def parse_names(text: str, what: str) -> list[str]:
    """'a,b' → ['a', 'b']: duplicates removed, order kept; empty is refused."""
    names: list[str] = []
    for part in text.split(","):
        if part.strip() and part.strip() not in names:
            names.append(part.strip())
    if not names:
        raise UserError(f"{what} is empty", "name at least one")
    return names


@dataclass
class DispatchOptions:
    """Where queued runs go: this machine's slots (GPUs, CPU) or Slurm."""

    executor: str = "local"
    gpus: str | None = None  # None = all visible, "none" = CPU only, "auto", "0,1" (positions)
    slots_per_gpu: str | int = 1
    cpu_slots: int | None = None
    gpu_max_util: float | None = None
    gpu_max_mem: float | None = None
    partition: str | None = None  # Slurm
    time_limit: int = 240  # Slurm, minutes per run
    gpus_per_node: int = 0  # Slurm

    def check(self) -> None:
        """Refuse any option that could only fail after runs were queued."""
        if self.executor not in EXECUTORS:
            raise UserError(f"--executor {self.executor!r}: choose one of {', '.join(EXECUTORS)}")
        if self.cpu_slots is not None and not 1 <= self.cpu_slots <= MAX_SLOTS:
            raise UserError(f"--cpu-slots {self.cpu_slots}: must be from 1 to {MAX_SLOTS}",
                            "leave it out for one slot per 8 cores")
        if str(self.slots_per_gpu).isdigit() and int(self.slots_per_gpu) > MAX_SLOTS:
            raise UserError(f"--slots-per-gpu {self.slots_per_gpu}: at most {MAX_SLOTS}",
                            "or 'auto': as many as fit in each GPU's memory")
        if self.time_limit < 1:
            raise UserError(f"--time {self.time_limit}: a Slurm time limit is at least 1 minute")
        if self.gpus_per_node < 0:
            raise UserError(f"--gpus-per-node {self.gpus_per_node}: must be 0 or more")
        try:
            parse_slots(self.slots_per_gpu)
            parse_gpu_spec(self.gpus)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def check_devices(self) -> None:
        """Local runs: the GPU settings (and busy GPUs for --gpus auto) resolve to slots, before anything is
        queued."""
        if self.executor == "local":
            try:
                local_plan(self.gpus, self.slots_per_gpu, self.cpu_slots, gpu_max_util=self.gpu_max_util,
                           gpu_max_mem=self.gpu_max_mem)
            except ValueError as exc:
                raise UserError(str(exc)) from None


@dataclass
class ConfigRequest:
    """What every config of a launch shares; the seeds and variants make the cross product."""

    variants: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    preset: str = "quick"
    dataset: str | None = None  # None: the preset's
    data_dir: str | None = None
    epochs: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    device: str | None = None
    threads: int | None = None
    overrides: list[str] = field(default_factory=list)
    grid: list[str] = field(default_factory=list)  # KEY=V1,V2 or ranges (amltui/app/runs/sweeps.py)
    sweep: str | None = None  # the sweep's name [default: generated when there is a grid]


# ConfigRequest fields that are also config keys: given both as an option and in --set/--grid is a conflict.
EXPLICIT_KEYS = ("dataset", "data_dir", "epochs", "train_subset", "test_subset", "device", "threads")
# Keys that only their own option sets (a run's seed, variant and preset are what --seeds, --variants and --preset
# make the cross product of): in --set or --grid they are refused, given the option or not.
OWN_OPTION_KEYS = {"seed": "--seeds", "variant": "--variants", "preset": "--preset"}


def check_conflicts(request: ConfigRequest) -> None:
    """Refuse a key set twice (``--epochs 3 --set epochs=2``): which one wins would be a silent pick."""
    for option, items in (("--set", request.overrides), ("--grid", request.grid)):
        for item in items:
            key = item.partition("=")[0].strip()
            if key in OWN_OPTION_KEYS:
                raise UserError(f"{option} {item}: {key} has its own option, {OWN_OPTION_KEYS[key]}",
                                f"use {OWN_OPTION_KEYS[key]} instead of {option} {key}=…")
            value = getattr(request, key, None) if key in EXPLICIT_KEYS else None
            if value is not None:
                raise UserError(f"--{key.replace('_', '-')} {value} and {option} {item} both set {key}",
                                f"give {key} once (drop --{key.replace('_', '-')} or the {option} item)")


def check_size(request: ConfigRequest) -> None:
    """Refuse a launch of more than MAX_RUNS runs before one config is resolved."""
    try:
        points = sweeps.count_points(request.grid or None)
    except sweeps.GridError as exc:
        raise UserError(str(exc)) from None
    runs = len(request.variants) * len(request.seeds) * points
    if runs > MAX_RUNS:
        raise UserError(f"{len(request.variants)} variant(s) × {len(request.seeds)} seed(s) × {points} grid point(s) "
                        f"= {runs} runs, more than one launch queues ({MAX_RUNS})",
                        "launch fewer at a time (fewer seeds, a coarser grid)")


def preflight(configs: list[RunConfig], options: DispatchOptions) -> None:
    """What can fail without training (data present and readable, subsets within the split, GPU ids that exist),
    checked before anything is queued (amltui/app/preflight.py); each distinct data/device setting once."""
    seen: set[tuple[Any, ...]] = set()
    for cfg in configs:
        setting = (cfg.dataset, cfg.data_dir, cfg.train_subset, cfg.test_subset, cfg.device)
        if setting in seen:
            continue
        seen.add(setting)
        try:
            check_config(cfg, gpus=options.gpus, local=options.executor == "local")
        except PreflightError as exc:
            raise UserError(str(exc)) from None


def _resolve_one(request: ConfigRequest, variant: str, seed: int, point: list[str]) -> RunConfig:
    return RunConfig.resolve(variant, request.preset, overrides=[*request.overrides, *point] or None, seed=seed,
                             dataset=request.dataset, data_dir=request.data_dir, epochs=request.epochs,
                             train_subset=request.train_subset, test_subset=request.test_subset,
                             device=request.device, threads=request.threads)


def resolve_sweep_configs(request: ConfigRequest) -> tuple[list[RunConfig], str | None]:
    """The RunConfigs of the request — variants × grid points × seeds — and the sweep name (None without a grid
    or --sweep). Every point is validated before anything is queued; an error names the key and the fix."""
    if not request.variants:
        raise UserError("variants: none chosen", "pick at least one")
    if not request.seeds:
        raise UserError("seeds: none given", SEEDS_HINT)
    check_conflicts(request)
    check_size(request)
    try:
        configs, name = sweeps.resolve_sweep(request.variants, request.seeds, request.grid or None,
                                             request.overrides, request.sweep,
                                             lambda v, s, point: _resolve_one(request, v, s, point))
    except (ConfigError, sweeps.GridError) as exc:
        raise UserError(str(exc)) from None
    request.sweep = name  # a generated name is kept: resolving the request again gives the same sweep
    return configs, name


def resolve_configs(request: ConfigRequest) -> list[RunConfig]:
    """The RunConfigs of the request (see resolve_sweep_configs)."""
    return resolve_sweep_configs(request)[0]


def check_new_id(run_id: str | None) -> None:
    """``--id``: a name amltui may use for a new run folder (None: one is generated)."""
    if run_id is not None:
        try:
            validate_run_id(run_id)
        except ValueError as exc:
            raise UserError(f"--id: {exc}") from None


@dataclass
class LaunchRequest(DispatchOptions, ConfigRequest):
    """`amltui run` and the dashboard's launch form."""

    run_id: str | None = None  # a single run only
    repeat: bool = False  # start fresh runs even where an identical finished run exists

    def check(self) -> None:
        super().check()
        check_new_id(self.run_id)
        if self.run_id is not None:
            if len(self.variants) * len(self.seeds) > 1 or self.grid:
                raise UserError("--id names a single run",
                                "leave it out when queueing several variants, seeds or grid points")


@dataclass
class LaunchPlan:
    configs: list[RunConfig]
    reused: dict[int, dict[str, Any]]  # index into configs → the identical finished run used instead
    sweep: str | None = None  # recorded in each new run and in the sweep's manifest
    sweep_line: str = ""  # "sweep NAME: 4 grid points × 2 variants × 3 seeds = 24 runs" (empty without a grid)

    @property
    def fresh(self) -> list[RunConfig]:
        return [c for i, c in enumerate(self.configs) if i not in self.reused]

    def reuse_messages(self) -> list[str]:
        return [reuse_message(self.configs[i], record) for i, record in self.reused.items()]


def plan_launch(store: Store, request: LaunchRequest) -> LaunchPlan:
    """Check the request, resolve its configs and find identical finished runs (unless ``repeat``)."""
    request.check()
    configs, sweep = resolve_sweep_configs(request)
    request.check_devices()
    preflight(configs, request)
    grid = sweeps.parse_grid(request.grid or None)
    line = f"sweep {sweep}: {sweeps.describe(grid, request.variants, request.seeds)}" if grid else ""
    if request.repeat:
        return LaunchPlan(configs, {}, sweep, line)
    from amltui.app.science.loading import data_fingerprint

    try:
        reused = find_identical(inspect_all(store.all(), store.runs_dir), configs, data_fingerprint)
    except (RunFailure, StoreError) as exc:  # e.g. the data a candidate needs for its fingerprint is missing
        raise UserError(str(exc)) from None
    return LaunchPlan(configs, reused, sweep, line)


def record_sweep(store: Store, request: ConfigRequest, plan: LaunchPlan, queued: list[str]) -> None:
    """Write (or extend) the sweep's manifest: its grid and every run of it, reused ones included."""
    sweeps.record(store.runs_dir, plan.sweep, request.grid or None,
                  [r["id"] for r in plan.reused.values()] + list(queued))


def queue_runs(store: Store, configs: list[RunConfig], run_ids: list[str | None] | None = None,
               sweep: str | None = None) -> list[str]:
    """Create queued runs (one index write for all); nothing is left behind on failure."""
    try:
        return [r["id"] for r in create_runs(store, configs, run_ids, sweep=sweep)]
    except (ValueError, FileExistsError, StoreError) as exc:
        raise UserError(str(exc)) from None


def start_detached(store: Store, ids: list[str], options: DispatchOptions) -> str:
    """Hand queued runs to a background scheduler on this machine (it outlives the caller); what it said."""
    try:
        return start_local(store, ids, gpus=options.gpus, slots_per_gpu=options.slots_per_gpu,
                           cpu_slots=options.cpu_slots, gpu_max_util=options.gpu_max_util,
                           gpu_max_mem=options.gpu_max_mem)
    except ValueError as exc:
        _not_started(store, ids, exc)
        raise UserError(str(exc)) from None


def local_slots(store: Store, ids: list[str], options: DispatchOptions) -> Any:
    """The LocalPlan (slots, admission gate, notes) for running ``ids`` in the foreground."""
    try:
        return local_plan(options.gpus, options.slots_per_gpu, options.cpu_slots, store=store,
                          gpu_max_util=options.gpu_max_util, gpu_max_mem=options.gpu_max_mem)
    except ValueError as exc:
        _not_started(store, ids, exc)
        raise UserError(str(exc)) from None


def _not_started(store: Store, ids: list[str], exc: Exception) -> None:
    """Nothing was started: the runs must not stay queued forever (`amltui resume` starts them later)."""
    for run_id in ids:
        set_status(store, run_id, Status.CANCELLED, expect=(Status.QUEUED,), error=f"not started: {exc}")


def slurm_executor(store: Store, options: DispatchOptions) -> Any:
    return SlurmExecutor(store.runs_dir, partition=options.partition, time_minutes=options.time_limit,
                         gpus_per_node=options.gpus_per_node)


def submit_slurm(store: Store, ids: list[str], slurm: Any) -> Iterator[tuple[str, str]]:
    """Submit each run as a Slurm job; yields (run id, job id); a refusal marks the run failed (exit code 1)."""
    for run_id in ids:
        try:
            job = slurm.submit(run_id, resume=True)
        except Exception as exc:  # submitit/sbatch errors: say what Slurm said
            set_status(store, run_id, Status.FAILED, expect=(Status.QUEUED,),
                       error=f"Slurm submission failed: {exc}")
            raise UserError(f"Slurm refused run {run_id}: {exc}", code=1) from None
        yield run_id, job


@dataclass
class LaunchResult:
    queued: list[str] = field(default_factory=list)  # new run ids
    reused: list[str] = field(default_factory=list)  # one message per identical finished run reused instead

    def message(self) -> str:
        parts = [f"queued {len(self.queued)} run(s): {', '.join(self.queued)}"] if self.queued else []
        return "\n".join(parts + self.reused) or "nothing to launch"


def launch(store: Store, request: LaunchRequest) -> LaunchResult:
    """Plan, queue and hand the fresh runs to a detached scheduler (the dashboard; `amltui run --detach`)."""
    plan = plan_launch(store, request)
    result = LaunchResult(reused=plan.reuse_messages())
    if plan.fresh:
        result.queued = queue_runs(store, plan.fresh, [request.run_id] * len(plan.fresh), sweep=plan.sweep)
    record_sweep(store, request, plan, result.queued)
    if result.queued:
        start_detached(store, result.queued, request)
    return result
