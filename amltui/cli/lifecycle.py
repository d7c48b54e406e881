"""Commands that start and stop runs: run, resume, cancel, rm, logs. The work is the service layer's
(amltui/app/service/); these commands translate options into requests and draw the progress."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from amltui.app import service
from amltui.app.errors import UserError
from amltui.app.executors.local import LocalScheduler
from amltui.app.results.flagnotes import flag_explanations
from amltui.app.runs import sweeps
from amltui.app.runs.folders import run_dir
from amltui.app.runs.records import TERMINAL, Status, inspect
from amltui.app.runs.store import Store
from amltui.app.safetext import markup_safe, printable
from amltui.app.service import DispatchOptions, LaunchRequest
from amltui.app.service.launch import preflight
from amltui.app.service.manage import listed
from amltui.app.service.rerun import RerunRequest, plan_rerun, queue_rerun
from amltui.app.service.waiting import queued_reason
from amltui.cli import compare
from amltui.cli import options as o
from amltui.cli.common import (
    FLAG_MARK,
    console,
    describe_os_error,
    err,
    fail,
    fit_columns,
    open_store,
    parse_list,
    print_metrics,
    print_table,
    reap_lost,
    resolve_run,
    status_text,
    table_width,
    user_errors,
)
from amltui.cli.help_text import Command
from amltui.cli.progress_bars import run_lines
from core.fsio import open_regular
from core.metrics import HEADLINE_ORDER, METRIC_ORDER, METRIC_SHORT_LABELS


def register(app: typer.Typer) -> None:
    for command, name in ((run, None), (rerun, None), (resume, None), (cancel, None), (remove, "rm"), (logs, None)):
        app.command(name, cls=Command)(command)
    compare.register(app)  # diff, tag, note


def run(
    variants: o.Variants = "ml_sa",
    seeds: o.Seeds = "0",
    preset: o.PresetOpt = "quick",
    device: o.Device = None,
    threads: o.Threads = None,
    run_id: Annotated[str | None, typer.Option("--id", help="Run id (a single run only; names "
                                               "amltui keeps in the runs folder are refused).")] = None,
    gpu_max_util: o.GpuMaxUtil = None,
    gpu_max_mem: o.GpuMaxMem = None,
    detach: o.Detach = False,
    repeat: o.Repeat = False,
    grid: o.Grid = None,
    sweep: o.Sweep = None,
    yes: o.Yes = False,
    wide: o.Wide = False,
    dataset: o.DatasetOpt = None,
    data_dir: o.DataDir = None,
    epochs: o.Epochs = None,
    train_subset: o.TrainSubset = None,
    test_subset: o.TestSubset = None,
    set_: o.SetOverrides = None,
    executor: o.ExecutorOpt = o.DISPATCH.executor,
    gpus: o.Gpus = None,
    slots_per_gpu: o.SlotsPerGpu = str(o.DISPATCH.slots_per_gpu),
    cpu_slots: o.CpuSlots = None,
    partition: o.Partition = None,
    time_limit: o.TimeLimit = o.DISPATCH.time_limit,
    gpus_per_node: o.GpusPerNode = o.DISPATCH.gpus_per_node,
    runs_dir: o.RunsDir = None,
) -> None:
    """Queue runs (the cross product of --variants, --seeds and --grid) and run them on the available devices.

    A (variant, seed, grid point) whose identical finished run exists is reused, not run again, unless --repeat.
    """
    request = LaunchRequest(
        variants=parse_list(variants, "--variants"), seeds=parse_list(seeds, "--seeds", int), preset=str(preset),
        device=device, threads=threads, run_id=run_id, repeat=repeat, gpu_max_util=gpu_max_util,
        gpu_max_mem=gpu_max_mem, grid=list(grid or []), sweep=sweep, dataset=o.text(dataset),
        data_dir=o.text(data_dir), epochs=epochs, train_subset=train_subset, test_subset=test_subset,
        overrides=list(set_ or []), executor=str(executor), gpus=gpus, slots_per_gpu=slots_per_gpu,
        cpu_slots=cpu_slots, partition=partition, time_limit=time_limit, gpus_per_node=gpus_per_node)
    with user_errors():  # every check before anything is written: a refused command leaves no run and no ./runs
        request.check()
        configs, _ = service.resolve_sweep_configs(request)
        request.check_devices()
        preflight(configs, request)
    store = open_store(runs_dir, create=True)
    with user_errors():
        plan = service.plan_launch(store, request)
    ids = _confirm_and_queue(store, request, plan, yes, wide)
    if ids:
        dispatch(store, ids, request, detach=detach, wide=wide)


def _confirm_and_queue(store: Store, request: LaunchRequest, plan: service.LaunchPlan, yes: bool,
                       wide: bool = False) -> list[str]:
    """Say the sweep, ask above the threshold, queue the fresh runs (the new ids; none when all were reused)."""
    if plan.sweep_line:
        console.print(plan.sweep_line, highlight=False, markup=False)
    if sweeps.needs_confirmation(len(plan.configs)) and not yes and not typer.confirm(
            f"queue {len(plan.configs)} runs?"):
        fail(f"nothing queued ({len(plan.configs)} runs refused; --yes skips this question)")
    for message in plan.reuse_messages():
        console.print(message, highlight=False, markup=False)
    if not plan.fresh:
        service.record_sweep(store, request, plan, [])
        _summary(store, [r["id"] for r in plan.reused.values()], wide=wide)
        return []
    with user_errors():
        ids = service.queue_runs(store, plan.fresh, [request.run_id] * len(plan.fresh), sweep=plan.sweep)
        service.record_sweep(store, request, plan, ids)
    console.print(f"queued {len(ids)} run(s) in {store.runs_dir}: {', '.join(ids)}", highlight=False, markup=False)
    return ids


def dispatch(store: Store, ids: list[str], options: DispatchOptions, *, detach: bool = False,
             wide: bool = False) -> None:
    """Hand queued runs to an executor; in the foreground, draw their progress until all have ended."""
    if options.executor == "slurm":
        slurm = service.slurm_executor(store, options)
        with user_errors():
            for run_id, job in service.submit_slurm(store, ids, slurm):
                console.print(f"{run_id}: Slurm job {job}", markup=False)
        if not detach:
            _follow(store, ids, cancel=lambda: [slurm.cancel(i) for i in ids], reconcile=slurm.reconcile, wide=wide)
        return
    with user_errors():
        if detach:
            console.print(service.start_detached(store, ids, options), markup=False, highlight=False)
            return
        plan = service.local_slots(store, ids, options)
    for note in plan.notes:
        err.print(f"note: {markup_safe(note)}", highlight=False)
    _run_foreground(store, ids, LocalScheduler(store, ids, plan.slots, admit=plan.gate), wide=wide)


def _run_foreground(store: Store, ids: list[str], scheduler: LocalScheduler, *, wide: bool = False) -> None:
    with interrupt_flag() as interrupted, run_lines(console, store, ids) as live:
        # Ctrl-C only sets the flag: the scheduler stops at a safe point (never between claiming a run and
        # starting its worker), records the cancel in each running run, then signals the workers.
        finished = scheduler.run(on_tick=live.refresh, should_stop=interrupted)
    if not finished:
        stopped = [i for i in ids if (store.get(i) or {}).get("status") != Status.DONE]
        err.print(f"Ctrl-C: {len(stopped)} run(s) cancelled; finished epochs are kept. To continue: "
                  + "; ".join(f"amltui resume {i}" for i in stopped), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130)
    if scheduler.display_error:
        err.print(f"the progress display failed ({scheduler.display_error}); the runs were not affected",
                  highlight=False, markup=False)
    _summary(store, ids, wide=wide)


SUMMARY_PRIORITY = ["run", "status", *HEADLINE_ORDER]


def summary_table(records: list[dict[str, Any]], width: int | None) -> tuple[Table, list[str]]:
    """(table, columns left out): each run's status and final metrics, fitted to ``width`` by leaving out
    whole metric columns (least telling first, core/metrics.py HEADLINE_ORDER), never cutting a value."""
    columns = ["run", "status", *(k for k in METRIC_ORDER if any(k in (r.get("metrics") or {}) for r in records))]
    cells = {"run": [str(r["id"]) for r in records], "status": [str(r.get("status", "?")) for r in records]}
    for key in columns[2:]:
        cells[key] = [f"{r['metrics'][key]:.2f}" if key in (r.get("metrics") or {}) else "" for r in records]
    title = {"run": "run", "status": "status", **METRIC_SHORT_LABELS}
    widths = {c: max([len(title[c])] + [len(v) for v in cells[c]]) for c in columns}
    shown, dropped = fit_columns(columns, widths, width, SUMMARY_PRIORITY)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for c in shown:
        table.add_column(title[c], no_wrap=True, justify="left" if c in ("run", "status") else "right")
    for i in range(len(records)):
        table.add_row(*(status_text(cells[c][i]) if c == "status" else markup_safe(cells[c][i]) for c in shown))
    return table, [title[c] for c in dropped]


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


def _follow(store: Store, ids: list[str], cancel, reconcile, *, wide: bool = False) -> None:
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
    _summary(store, ids, wide=wide)


def _summary(store: Store, ids: list[str], *, wide: bool = False) -> None:
    """One row per run with its final metrics (columns left out whole, and named, where the terminal is too
    narrow); a line for each flagged run (e.g. at chance); exit 1 if any run did not finish."""
    records = [inspect(store.get(i) or {"id": i, "status": "?"}) for i in ids]
    if len(records) == 1 and records[0].get("status") == Status.DONE:
        print_metrics(records[0])
    else:
        width = table_width(wide)
        table, dropped = summary_table(records, width)
        print_table(table, width, dropped)
        for r in records:
            for name, _, reason in flag_explanations(r):
                console.print(f"{FLAG_MARK} {r['id']}: {name}: {reason}", highlight=False, markup=False)
    for r in records:
        if r.get("status") != Status.DONE:
            err.print(f"{r['id']}: {r.get('status')}: {r.get('error') or ''}", highlight=False, markup=False)
    if any(r.get("status") != Status.DONE for r in records):
        raise typer.Exit(1)


def resume(
    run: o.RunArg,
    detach: o.Detach = False,
    wide: o.Wide = False,
    executor: o.ExecutorOpt = o.DISPATCH.executor,
    gpus: o.Gpus = None,
    slots_per_gpu: o.SlotsPerGpu = str(o.DISPATCH.slots_per_gpu),
    cpu_slots: o.CpuSlots = None,
    partition: o.Partition = None,
    time_limit: o.TimeLimit = o.DISPATCH.time_limit,
    gpus_per_node: o.GpusPerNode = o.DISPATCH.gpus_per_node,
    runs_dir: o.RunsDir = None,
) -> None:
    """Continue a failed or cancelled run from its last epoch checkpoint, or start an orphaned one.

    Its config stays as it is (finished epochs were trained under it); to change the config or the data, use
    `amltui rerun RUN --set KEY=VALUE` (a new run). Resuming a queued, running or stalled run is refused.
    """
    dispatch_options = DispatchOptions(executor=str(executor), gpus=gpus, slots_per_gpu=slots_per_gpu,
                                       cpu_slots=cpu_slots, partition=partition, time_limit=time_limit,
                                       gpus_per_node=gpus_per_node)
    with user_errors():
        dispatch_options.check()
    store = open_store(runs_dir)
    reap_lost(store)
    record = resolve_run(store, run)
    with user_errors():
        run_id = service.resume_run(store, record, dispatch_options)
    dispatch(store, [run_id], dispatch_options, detach=detach, wide=wide)


def rerun(
    run: o.RunArg,
    set_: o.SetOverrides = None,
    data_dir: o.DataDir = None,
    new_id: Annotated[str | None, typer.Option("--id", help="The new run's id [default: generated].")] = None,
    detach: o.Detach = False,
    wide: o.Wide = False,
    executor: o.ExecutorOpt = o.DISPATCH.executor,
    gpus: o.Gpus = None,
    slots_per_gpu: o.SlotsPerGpu = str(o.DISPATCH.slots_per_gpu),
    cpu_slots: o.CpuSlots = None,
    partition: o.Partition = None,
    time_limit: o.TimeLimit = o.DISPATCH.time_limit,
    gpus_per_node: o.GpusPerNode = o.DISPATCH.gpus_per_node,
    runs_dir: o.RunsDir = None,
) -> None:
    """Start a new run with an old run's config plus changes.

    The changes are --set KEY=VALUE items and --data-dir, e.g. to fix a failed run. The old run stays as it is;
    the new one gets its own id (and the old run's sweep). Always a fresh run: an
    identical finished run is not reused.
    """
    request = RerunRequest(overrides=list(set_ or []), data_dir=o.text(data_dir), run_id=new_id,
                           executor=str(executor), gpus=gpus, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots,
                           partition=partition, time_limit=time_limit, gpus_per_node=gpus_per_node)
    store = open_store(runs_dir)
    reap_lost(store)
    record = resolve_run(store, run)
    with user_errors():
        config = plan_rerun(store, record, request)
        run_id = queue_rerun(store, record, config, request)
    console.print(f"queued 1 run(s) in {store.runs_dir}: {run_id} (rerun of {record['id']})", highlight=False,
                  markup=False, soft_wrap=True)
    dispatch(store, [run_id], request, detach=detach, wide=wide)


def cancel(
    runs: Annotated[list[str] | None, typer.Argument(metavar="RUNS...", help="Run ids (or unique prefixes).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Cancel every queued or running run.")] = False,
    runs_dir: o.RunsDir = None,
) -> None:
    """Cancel queued, orphaned, running or stalled runs (a worker stops at its next safe point, within a batch, and
    keeps its finished epochs; the run always ends "cancelled")."""
    store = open_store(runs_dir)
    reap_lost(store)
    if all_:
        with user_errors():
            targets = service.cancellable(store)
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
            outcome = service.cancel_one(store, record)
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: StoreError, SlurmError
            failures += 1
            reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
            err.print(f"{record['id']}: could not cancel: {reason}", highlight=False, markup=False)
            continue
        console.print(f"{record['id']}: {outcome}", highlight=False, markup=False)
    if failures:
        raise typer.Exit(1)


def remove(
    runs: Annotated[list[str] | None, typer.Argument(metavar="RUN", help="Run ids (or unique prefixes).")]
    = None,
    status: Annotated[list[str] | None, typer.Option(metavar=o.ONE_VALUE, help="Delete every run with this status "
                                                     "(repeatable), e.g. failed.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    runs_dir: o.RunsDir = None,
) -> None:
    """Delete runs: their folders and their records (running runs must be cancelled first)."""
    store = open_store(runs_dir)
    reap_lost(store)
    if not runs and not status:
        fail("name the runs to delete, or use --status (e.g. --status failed)")
    records = [resolve_run(store, text) for text in runs or []]
    with user_errors():
        records += service.with_status(store, list(status or [])) if status else []
    records = list({r["id"]: r for r in records}.values())
    if not records:
        console.print(f"no run has status {', '.join(status or [])}; nothing deleted", highlight=False, markup=False)
        return
    with user_errors():
        service.check_deletable(store, records)
    ids = [r["id"] for r in records]
    if not yes and not typer.confirm(f"delete {len(ids)} run(s) and their folders ({listed(ids, 30)})?"):
        console.print("Nothing removed.", highlight=False, markup=False)  # a "no" is an answer, not a failure
        return
    for record in records:
        try:
            folder = service.delete_run(store, record)
        except UserError as exc:  # removed by another command meanwhile, or resumed: nothing deleted here
            fail(str(exc), code=exc.code)
        except OSError as exc:
            fail(f"could not remove {record['id']}: {describe_os_error(exc)}", code=1)
        console.print(f"removed {record['id']} ({folder})", highlight=False, markup=False)


def logs(
    run: o.RunArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")] = False,
    runs_dir: o.RunsDir = None,
) -> None:
    """Print a run's log (log.txt, then the worker's own output when it has any)."""
    store = open_store(runs_dir)
    reap_lost(store)
    record = resolve_run(store, run)
    rd = run_dir(store.runs_dir, record["id"])
    position = _print_from(rd.log_file, 0)
    waiting = queued_reason(store, record)  # no worker yet: say what it waits for instead of printing nothing
    if waiting:
        err.print(waiting, highlight=False, markup=False, soft_wrap=True)
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
    """Print a log from byte ``position`` on, control characters escaped; returns the position reached."""
    try:
        with open_regular(path) as fh:  # a FIFO in place of the log is refused, not waited on
            fh.seek(position)
            data = fh.read()
            position = fh.tell()
    except FileNotFoundError:
        return position
    except OSError as exc:
        fail(str(exc.strerror or exc))
    if data:
        typer.echo(printable(data.decode("utf-8", errors="replace"), lines=True), nl=False)
    return position
