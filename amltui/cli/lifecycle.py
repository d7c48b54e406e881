"""Commands that start and stop runs: run, resume, cancel, rm, logs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from amltui.app import sweeps
from amltui.app.executors.control import cancel_run, local_plan, start_local
from amltui.app.executors.liveness import ORPHANED, STALLED, WORKING
from amltui.app.executors.local import LocalScheduler
from amltui.app.gpus import MAX_MEM_DEFAULT, MAX_UTIL_DEFAULT, parse_gpu_spec, parse_slots
from amltui.app.records import DAMAGED, TERMINAL, inspect
from amltui.app.runs import create_runs, requeue, run_dir, set_status
from amltui.app.store import Store, StoreError, validate_run_id
from amltui.cli.common import (
    RunArg,
    RunsDir,
    all_records,
    console,
    describe_os_error,
    err,
    fail,
    open_store,
    parse_list,
    print_metrics,
    reap_lost,
    resolve_run,
    status_text,
)
from amltui.cli.progress_bars import run_lines
from core.config import CHOICES, PRESETS, VARIANTS, ConfigError, RunConfig
from core.metrics import METRIC_LABELS, METRIC_ORDER

DATASETS = CHOICES["dataset"]

EXECUTORS = ("local", "slurm")
GPUS_HELP = ("GPUs by position among the visible ones (CUDA_VISIBLE_DEVICES order), e.g. 0,1 [default: all "
             "visible]; 'auto' = those not busy (re-checked before each run); 'none' = CPU. See `amltui gpus`.")
SLOTS_HELP = "Concurrent runs per GPU, or 'auto': as many as fit in its free memory (measured per config)."
MAX_UTIL_HELP = (f"--gpus auto: a GPU at or above this utilisation (%) is busy [default: {MAX_UTIL_DEFAULT:g}, "
                 "or $AMLTUI_GPU_MAX_UTIL].")
MAX_MEM_HELP = (f"--gpus auto: a GPU with this share of its memory (%) used by others is busy [default: "
                f"{MAX_MEM_DEFAULT:g}, or $AMLTUI_GPU_MAX_MEM].")
CANCELLABLE = ("queued", ORPHANED, *WORKING)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(resume)
    app.command()(cancel)
    app.command("rm")(remove)
    app.command()(logs)
    app.command()(reproduce)


def run(
    variants: Annotated[str, typer.Option("--variants", "--variant",
                                          help=f"Comma-separated: {', '.join(VARIANTS)}.")] = "ml_sa",
    seeds: Annotated[str, typer.Option("--seeds", "--seed", help="Comma-separated seeds, e.g. 0,1,2.")] = "0",
    preset: Annotated[str, typer.Option(help=f"Hyperparameter preset: {', '.join(PRESETS)}.")] = "quick",
    dataset: Annotated[str | None, typer.Option(help=f"One of: {', '.join(DATASETS)} [default: the preset's: "
                                                "mnist for paper, mnist-sample otherwise].")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the four idx files (gz or not).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    train_subset: Annotated[int | None, typer.Option(help="Train on N images (stratified, seed 0).")] = None,
    test_subset: Annotated[int | None, typer.Option(help="Evaluate on N test images (stratified).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (scheduled runs: the slot decides).")] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads per run [default: the slot's cores].")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set lr=3e-4 "
                                                   "(repeatable; `amltui config-keys` lists them).")] = None,
    run_id: Annotated[str | None, typer.Option("--id", help="Run id (a single run only; names "
                                                   "amltui keeps in the runs folder are refused).")] = None,
    executor: Annotated[str, typer.Option(help="local or slurm.")] = "local",
    gpus: Annotated[str | None, typer.Option(help=GPUS_HELP)] = None,
    slots_per_gpu: Annotated[str, typer.Option(help=SLOTS_HELP)] = "1",
    gpu_max_util: Annotated[float | None, typer.Option(help=MAX_UTIL_HELP)] = None,
    gpu_max_mem: Annotated[float | None, typer.Option(help=MAX_MEM_HELP)] = None,
    cpu_slots: Annotated[int | None, typer.Option(help="Concurrent runs without a GPU [default: 1/8 cores].")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Return at once; runs go on (see `amltui ls`).")] = False,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    time_limit: Annotated[int, typer.Option("--time", help="Slurm time limit per run, minutes.")] = 240,
    gpus_per_node: Annotated[int, typer.Option(help="Slurm GPUs per job.")] = 0,
    repeat: Annotated[bool, typer.Option("--repeat", help="Start a fresh run even when an identical finished run "
                                         "(same config, seed, data and code) exists; tables count the latest.")]
    = False,
    grid: Annotated[list[str] | None, typer.Option("--grid", help=sweeps.GRID_HELP)] = None,
    sweep: Annotated[str | None, typer.Option(help="Sweep name recorded in each run [default: generated with "
                                              "--grid]; `export --sweep NAME`, `plot --sweep NAME`.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help=f"Queue more than {sweeps.CONFIRM_ABOVE} runs "
                                      "without asking.")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Queue runs (the cross product of --variants, --grid points and --seeds) and run them on the available devices.

    A (variant, seed) whose identical finished run exists is reused, not run again, unless --repeat.
    """
    variant_list = parse_list(variants, "--variants")
    seed_list = parse_list(seeds, "--seeds", int)
    # Every option is checked before anything is written: a refused command leaves no run behind.
    check_dispatch_options(executor=executor, gpus=gpus, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots,
                           time_limit=time_limit, gpus_per_node=gpus_per_node)
    if run_id is not None:
        try:
            validate_run_id(run_id)
        except ValueError as exc:
            fail(f"--id: {exc}")
    def resolve(variant: str, seed: int, point: list[str]) -> RunConfig:
        return RunConfig.resolve(
            variant, preset, overrides=[*(set_ or []), *point], seed=seed, dataset=dataset,
            data_dir=str(data_dir) if data_dir else None, epochs=epochs, train_subset=train_subset,
            test_subset=test_subset, device=device, threads=threads)

    try:  # the whole grid is validated before anything is queued (amltui/app/sweeps.py)
        configs, sweep = sweeps.plan(variant_list, seed_list, grid, set_, sweep, resolve, console.print,
                                     typer.confirm, yes)
    except (sweeps.GridError, ConfigError) as exc:
        fail(str(exc))
    if run_id and len(configs) > 1:
        fail("--id names a single run; leave it out when queueing several variants, seeds or grid points")
    store = open_store(runs_dir)
    if executor == "local":
        try:  # GPU settings (and busy GPUs for --gpus auto) are checked before anything is queued
            local_plan(gpus, slots_per_gpu, cpu_slots, gpu_max_util=gpu_max_util, gpu_max_mem=gpu_max_mem)
        except ValueError as exc:
            fail(escape(str(exc)))
    reused: dict[int, dict] = {}
    if not repeat:
        from amltui.app.reuse import find_identical, reuse_message
        from amltui.app.runs import RunFailure

        try:
            reused = find_identical(all_records(store), configs)
        except RunFailure as exc:
            fail(str(exc))
        for i, record in reused.items():
            console.print(reuse_message(configs[i], record), highlight=False, markup=False)
    fresh = [config for i, config in enumerate(configs) if i not in reused]
    if not fresh:
        sweeps.record(store.runs_dir, sweep, grid, [r["id"] for r in reused.values()])
        _summary(store, [r["id"] for r in reused.values()])
        return
    ids = queue_runs(store, fresh, [run_id] * len(fresh), sweep=sweep)
    sweeps.record(store.runs_dir, sweep, grid, [r["id"] for r in reused.values()] + ids)
    console.print(f"queued {len(ids)} run(s) in {store.runs_dir}: {', '.join(ids)}", highlight=False, markup=False)
    dispatch(store, ids, executor=executor, gpus=gpus, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots,
             detach=detach, partition=partition, time_limit=time_limit, gpus_per_node=gpus_per_node,
             gpu_max_util=gpu_max_util, gpu_max_mem=gpu_max_mem)


def check_dispatch_options(*, executor: str = "local", gpus: str | None = None, slots_per_gpu: str | int = 1,
                           cpu_slots: int | None = None, time_limit: int = 240, gpus_per_node: int = 0) -> None:
    """Refuse (exit 2) any executor option that could only fail after runs were queued."""
    if executor not in EXECUTORS:
        fail(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if cpu_slots is not None and cpu_slots < 1:
        fail(f"--cpu-slots {cpu_slots}: must be at least 1 (leave it out for one slot per 8 cores)")
    if time_limit < 1:
        fail(f"--time {time_limit}: a Slurm time limit is at least 1 minute")
    if gpus_per_node < 0:
        fail(f"--gpus-per-node {gpus_per_node}: must be 0 or more")
    try:
        parse_slots(slots_per_gpu)
        parse_gpu_spec(gpus)
    except ValueError as exc:
        fail(str(exc))


def queue_runs(store: Store, configs: list[RunConfig], run_ids: list[str | None] | None = None,
               sweep: str | None = None) -> list[str]:
    """Create queued runs (one index write for all); a clear error and nothing left behind on failure."""
    try:
        return [r["id"] for r in create_runs(store, configs, run_ids, sweep=sweep)]
    except (ValueError, FileExistsError, StoreError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(describe_os_error(exc))


def dispatch(store: Store, ids: list[str], *, executor: str = "local", gpus: str | None = None,
             slots_per_gpu: str | int = 1, cpu_slots: int | None = None, detach: bool = False,
             partition: str | None = None, time_limit: int = 240, gpus_per_node: int = 0,
             gpu_max_util: float | None = None, gpu_max_mem: float | None = None) -> None:
    """Hand queued runs to an executor; in the foreground, draw their progress until all have ended."""
    if executor == "slurm":
        from amltui.app.executors.slurm import SlurmExecutor

        slurm = SlurmExecutor(store.runs_dir, partition=partition, time_minutes=time_limit,
                              gpus_per_node=gpus_per_node)
        for run_id in ids:
            try:
                job = slurm.submit(run_id, resume=True)
            except Exception as exc:  # submitit/sbatch errors: say what Slurm said
                set_status(store, run_id, "failed", expect=("queued",), error=f"Slurm submission failed: {exc}")
                fail(f"Slurm refused run {run_id}: {exc}", code=1)
            console.print(f"{run_id}: Slurm job {job}", markup=False)
        if not detach:
            _follow(store, ids, cancel=lambda: [slurm.cancel(i) for i in ids], reconcile=slurm.reconcile)
        return
    try:
        if detach:
            console.print(start_local(store, ids, gpus=gpus, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots,
                                      gpu_max_util=gpu_max_util, gpu_max_mem=gpu_max_mem),
                          markup=False, highlight=False)
            return
        plan = local_plan(gpus, slots_per_gpu, cpu_slots, store=store, gpu_max_util=gpu_max_util,
                          gpu_max_mem=gpu_max_mem)
    except ValueError as exc:
        # Nothing was started: the runs must not stay queued forever (`amltui resume` starts them later).
        for run_id in ids:
            set_status(store, run_id, "cancelled", expect=("queued",), error=f"not started: {exc}")
        fail(escape(str(exc)))
    for note in plan.notes:
        err.print(f"note: {escape(note)}", highlight=False)
    scheduler = LocalScheduler(store, ids, plan.slots, admit=plan.gate)
    with interrupt_flag() as interrupted, run_lines(console, store, ids) as live:
        # Ctrl-C only sets the flag: the scheduler stops at a safe point (never between claiming a run and
        # starting its worker), records the cancel in each running run, then signals the workers.
        finished = scheduler.run(on_tick=live.refresh, should_stop=interrupted)
    if not finished:
        err.print("Ctrl-C: runs cancelled (finished epochs are kept; `amltui resume RUN` continues)")
        raise typer.Exit(130)
    if scheduler.display_error:
        err.print(f"the progress display failed ({scheduler.display_error}); the runs were not affected",
                  highlight=False, markup=False)
    _summary(store, ids)


@contextlib.contextmanager
def interrupt_flag() -> Iterator[Callable[[], str | None]]:
    """Within the block, SIGINT (Ctrl-C) and SIGTERM set a flag instead of raising; yields its reader."""
    hits: list[str] = []

    def handler(signum: int, frame: object) -> None:
        hits.append("Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: f"cancelled ({hits[0]} in the foreground)" if hits else None
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _follow(store: Store, ids: list[str], cancel, reconcile) -> None:
    with run_lines(console, store, ids) as live:
        try:
            while True:
                reconcile(store)
                if live.all_ended(live.refresh()):
                    break
                time.sleep(1.0)
        except KeyboardInterrupt:
            err.print("Ctrl-C: cancelling the Slurm jobs")
            cancel()
            raise typer.Exit(130) from None
    _summary(store, ids)


def _summary(store: Store, ids: list[str]) -> None:
    """One row per run with its final metrics; exit 1 if any run did not finish."""
    records = [inspect(store.get(i) or {"id": i, "status": "?"}) for i in ids]
    if len(records) == 1 and records[0].get("status") == "done":
        print_metrics(records[0])
    else:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        table.add_column("run", no_wrap=True)
        table.add_column("status", no_wrap=True)
        for key in METRIC_ORDER:
            table.add_column(METRIC_LABELS[key].replace("A_IA→target", "→tgt"), justify="right", no_wrap=True)
        for r in records:
            m = r.get("metrics") or {}
            table.add_row(r["id"], status_text(r.get("status", "?")),
                          *(f"{m[k]:.2f}" if k in m else "" for k in METRIC_ORDER))
        console.print(table)
    for r in records:
        if r.get("status") != "done":
            err.print(f"{r['id']}: {r.get('status')}: {r.get('error') or ''}", highlight=False, markup=False)
    if any(r.get("status") != "done" for r in records):
        raise typer.Exit(1)


def resume(
    run: RunArg,
    detach: Annotated[bool, typer.Option("--detach", help="Return at once; the run goes on.")] = False,
    gpus: Annotated[str | None, typer.Option(help=GPUS_HELP)] = None,
    executor: Annotated[str, typer.Option(help="local or slurm.")] = "local",
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Continue a failed or cancelled run from its last epoch checkpoint, or start an orphaned one.

    A run still owned by a worker (running, or stalled: paused or hung) is refused: one worker per run.
    """
    check_dispatch_options(executor=executor, gpus=gpus)
    store = open_store(runs_dir)
    reap_lost(store)
    record = resolve_run(store, run)
    if record["status"] == DAMAGED:
        fail(f"run {record['id']} cannot be resumed: it is damaged ({record[DAMAGED]}); "
             f"`amltui store rebuild` re-reads the run folders, `amltui rm {record['id']}` deletes it")
    run_id = record["id"]
    if record["status"] == "done":
        fail(f"run {run_id} is already done; `amltui eval {run_id}` re-evaluates it")
    if record["status"] == STALLED:
        fail(f"run {run_id} is stalled: its worker (pid {record.get('pid')}) still owns it but has stopped "
             f"beating (paused or hung); resume that process (kill -CONT) or `amltui cancel {run_id}` it first")
    if record["status"] in ("running", "queued"):
        fail(f"run {run_id} is {record['status']}; cancel it first (`amltui cancel {run_id}`)")
    try:
        requeued = requeue(store, run_id)
    except (ValueError, StoreError) as exc:
        fail(f"run {run_id} cannot be resumed: {exc}")
    except OSError as exc:
        fail(describe_os_error(exc))
    if requeued is None:
        fail(f"run {run_id} is {(store.get(run_id) or {}).get('status')}; only a failed, cancelled or orphaned "
             "run can be resumed")
    dispatch(store, [run_id], executor=executor, gpus=gpus, detach=detach, partition=partition)


def cancel(
    runs: Annotated[list[str] | None, typer.Argument(help="Run ids (or unique prefixes).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Cancel every queued or running run.")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Cancel queued, orphaned, running or stalled runs (a worker stops at its next safe point, within a batch, and
    keeps its finished epochs; the run always ends "cancelled")."""
    store = open_store(runs_dir)
    reap_lost(store)
    if all_:
        targets = [r for r in all_records(store) if _claimed_status(r) in CANCELLABLE]
    elif runs:
        targets = [resolve_run(store, text) for text in runs]
    else:
        fail("name the runs to cancel, or use --all")
    if not targets:
        console.print("nothing to cancel")
    failures = 0
    for record in targets:
        # One run that cannot be cancelled (folder gone, disk full) must not stop the others.
        try:
            outcome = _cancel_one(store, record)
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: StoreError, SlurmError
            failures += 1
            reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
            err.print(f"{record['id']}: could not cancel: {reason}", highlight=False, markup=False)
            continue
        console.print(f"{record['id']}: {outcome}", highlight=False, markup=False)
    if failures:
        raise typer.Exit(1)


def _worker_alive(record: dict) -> bool:
    """A damaged record that says running and names a live worker on this host (its folder is in use)."""
    from amltui.app.executors.liveness import pid_alive

    pid = record.get("pid")
    return (_claimed_status(record) == "running" and isinstance(pid, int) and pid > 0
            and record.get("host") == socket.gethostname() and pid_alive(pid))


def _claimed_status(record: dict) -> str | None:
    """The status a record claims, even when it is damaged (a damaged running run may still have a worker)."""
    return record.get("stored_status") if record.get("status") == DAMAGED else record.get("status")


def _cancel_one(store: Store, record: dict) -> str:
    if record.get("status") != DAMAGED:
        return cancel_run(store, record)
    folder = run_dir(store.runs_dir, record["id"]).path
    claimed = _claimed_status(record)
    if claimed not in ("queued", "running"):
        return f"damaged ({record[DAMAGED]}); nothing to cancel"
    if not folder.is_dir() or folder.is_symlink():
        # No folder: no worker can use it. The index record is all that is left; mark it so it stops counting.
        store.update(record["id"], {"status": "cancelled", "pid": None,
                                    "error": f"cancelled: {record[DAMAGED]}"})
        return f"marked cancelled ({record[DAMAGED]}); `amltui rm {record['id']}` deletes the record"
    # The raw record: its own checks (e.g. a Slurm job id that is no job id) give the precise refusal.
    return cancel_run(store, store.get(record["id"]) or {**record, "status": claimed})


def remove(
    runs: Annotated[list[str], typer.Argument(help="Run ids (or unique prefixes).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Delete runs: their folders and their records (running runs must be cancelled first)."""
    store = open_store(runs_dir)
    reap_lost(store)
    records = [resolve_run(store, text) for text in runs]
    active = [r["id"] for r in records if r.get("status") in ("queued", *WORKING) or _worker_alive(r)]
    if active:
        fail(f"{', '.join(active)} still queued, running or stalled; `amltui cancel` them first")
    for record in records:
        folder = run_dir(store.runs_dir, record["id"]).path
        if folder.is_symlink():
            fail(f"{folder} is a symbolic link to {os.readlink(folder)}; amltui never deletes through a link. "
                 f"Remove the link yourself (rm {folder}) and then `amltui rm {record['id']}`")
    if not os.access(store.runs_dir, os.W_OK):
        fail(f"cannot delete runs: the runs folder {store.runs_dir} is not writable by you")
    if not yes and not typer.confirm(f"delete {len(records)} run(s) and their folders?"):
        raise typer.Exit(1)
    for record in records:
        folder = run_dir(store.runs_dir, record["id"]).path
        try:
            if folder.exists():
                shutil.rmtree(folder)
            store.remove(record["id"])
        except OSError as exc:
            fail(f"could not remove {record['id']}: {describe_os_error(exc)}", code=1)
        console.print(f"removed {record['id']} ({folder})", highlight=False, markup=False)


def logs(
    run: RunArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Print a run's log (log.txt, then the worker's own output when it has any)."""
    store = open_store(runs_dir)
    record = resolve_run(store, run)
    rd = run_dir(store.runs_dir, record["id"])
    position = _print_from(rd.log_file, 0)
    while follow:
        reap_lost(store)
        ended = (store.get(record["id"]) or {}).get("status") in TERMINAL
        position = _print_from(rd.log_file, position)
        if ended:
            break
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return
    worker_out = rd.path / "worker.out"
    if not follow and worker_out.exists() and worker_out.stat().st_size:
        console.print("[dim]--- worker output ---[/]")
        _print_from(worker_out, 0)


def _print_from(path: Path, position: int) -> int:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            fh.seek(position)
            text = fh.read()
            position = fh.tell()
    except FileNotFoundError:
        return position
    if text:
        typer.echo(text, nl=False)
    return position


def reproduce(
    preset: Annotated[str, typer.Option(help=f"{', '.join(PRESETS)}.")] = "quick",
    dataset: Annotated[str | None, typer.Option(help=f"One of: {', '.join(DATASETS)} [default: the preset's: "
                                                "mnist for paper, mnist-sample otherwise].")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the four idx files.")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    variants: Annotated[str, typer.Option(help="Comma-separated variants.")] = ",".join(VARIANTS),
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    train_subset: Annotated[int | None, typer.Option(help="Train on N images (stratified, seed 0).")] = None,
    test_subset: Annotated[int | None, typer.Option(help="Evaluate on N test images.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key (repeatable).")] = None,
    executor: Annotated[str, typer.Option(help="local or slurm.")] = "local",
    gpus: Annotated[str | None, typer.Option(help=GPUS_HELP)] = None,
    slots_per_gpu: Annotated[str, typer.Option(help=SLOTS_HELP)] = "1",
    cpu_slots: Annotated[int | None, typer.Option(help="Concurrent runs without a GPU.")] = None,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    time_limit: Annotated[int, typer.Option("--time", help="Slurm time limit per run, minutes.")] = 240,
    detach: Annotated[bool, typer.Option("--detach", help="Queue and return; rerun to write the report.")] = False,
    human_sets: Annotated[bool, typer.Option("--human-sets", help="Score Tramèr et al.'s human-labelled sets "
                                             "(download, or --human-sets-dir); MNIST-digit datasets only.")] = False,
    human_sets_dir: Annotated[Path | None, typer.Option(help="Local copy of invariance_examples/.")] = None,
    curves: Annotated[bool, typer.Option("--curves", help="Compute each finished run's accuracy-vs-ε curve "
                                         "(as `eval --curve`; cached) for the report's robustness.png.")] = False,
    autoattack: Annotated[bool, typer.Option("--autoattack", help="Compute A_AA (as `eval --autoattack`; cached) "
                                             "for each finished run that lacks it.")] = False,
    out: Annotated[Path | None, typer.Option(help="Report folder [default: <runs-dir>/reports/…].")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Reproduce Table 1 and Figure 1: invariance sets, variants × seeds, then a report folder.

    Idempotent: finished runs and cached invariance sets are reused, interrupted runs resume.
    """
    import sys

    from amltui.app.reproduce import plan, write_report
    from amltui.app.runs import evaluate_human_sets, invariance_for, load_run_data
    from amltui.cli.progress_bars import RunProgress
    from core.device import resolve_device, set_threads

    variant_list = parse_list(variants, "--variants")
    seed_list = parse_list(seeds, "--seeds", int)
    check_dispatch_options(executor=executor, gpus=gpus, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots,
                           time_limit=time_limit)
    if out is not None and out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder for the report")
    try:
        configs = [RunConfig.resolve(v, preset, overrides=set_, seed=s, dataset=dataset,
                                     data_dir=str(data_dir) if data_dir else None, epochs=epochs,
                                     train_subset=train_subset, test_subset=test_subset)
                   for v in variant_list for s in seed_list]
    except ConfigError as exc:
        fail(str(exc))
    if human_sets or human_sets_dir:
        from core.domains import human_sets_refusal

        refusal = human_sets_refusal(configs[0].dataset)
        if refusal:
            fail(f"--human-sets: {refusal}")
    dataset = configs[0].dataset
    store = open_store(runs_dir)
    reap_lost(store)
    todo = plan(store, configs)
    console.print(f"{len(configs)} runs: {len(todo.reuse)} finished (reused), {len(todo.resume)} to resume, "
                  f"{len(todo.wait)} queued or running, {len(todo.create)} to start")
    # The invariance sets are made once, here, before any worker needs them (workers would race to make them).
    if todo.create or todo.resume:
        first = configs[0]
        set_threads(first.threads)
        try:
            data = load_run_data(first)
        except Exception as exc:  # DataNotFoundError and friends: say it before queueing anything
            fail(str(exc))
        splits = (["train"] if any(c.needs_invariance for c in configs) else []) + (["test"] if first.eval_ia else [])
        with RunProgress(console) as progress:
            for split in splits:
                invariance_for(first, data, split, store.runs_dir, resolve_device(first.device), progress.on_event)
    for run_id in todo.resume:
        requeue(store, run_id)
    new_ids = queue_runs(store, todo.create) if todo.create else []
    to_run = todo.resume + new_ids
    all_ids = todo.reuse + todo.wait + to_run
    code = 0
    if to_run or todo.wait:
        try:
            if to_run:
                dispatch(store, to_run, executor=executor, gpus=gpus, slots_per_gpu=slots_per_gpu,
                         cpu_slots=cpu_slots, detach=detach, partition=partition, time_limit=time_limit)
            if todo.wait and not detach:
                _follow(store, todo.wait, cancel=lambda: None, reconcile=reap_lost)
        except typer.Exit as exc:
            if exc.exit_code == 130:
                raise
            code = exc.exit_code
    if detach:
        console.print("runs queued; rerun this command when they have finished to write the report")
        return
    if human_sets or human_sets_dir:
        for run_id in all_ids:
            record = store.get(run_id)
            if record and record.get("status") == "done" and "human_sets" not in record:
                try:
                    evaluate_human_sets(store, run_id, from_dir=human_sets_dir)
                except FileNotFoundError as exc:
                    err.print(f"human-labelled sets skipped: {exc}", markup=False)
                    break
    if curves or autoattack:
        from amltui.app.robustness import CurveSpec, compute_curve, open_evaluator, record_autoattack
        from core.robustness import default_grid

        with RunProgress(console) as progress:
            for run_id in all_ids:
                record = store.get(run_id)
                if not record or record.get("status") != "done":
                    continue
                ev = open_evaluator(store, run_id, listener=progress.on_event)
                if autoattack and "A_AA" not in (record.get("metrics") or {}):
                    record_autoattack(store, ev)
                if curves:
                    compute_curve(ev, CurveSpec(default_grid(ev.config.eps_s), ev.config.pgd_steps,
                                                autoattack=autoattack or ev.config.eval_aa))
    folder = out or store.runs_dir / "reports" / f"reproduce-{dataset}-{preset}"
    report = write_report(store, all_ids, folder, "amltui " + " ".join(sys.argv[1:]))
    console.print(f"report: {report}", markup=False)
    if code:
        raise typer.Exit(code)
