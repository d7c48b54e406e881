"""`amltui reproduce`: Table 1 and Figure 1 in one command. The sequence is the service layer's
(amltui/app/service/reproduce.py); this module translates the options and draws the progress."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from amltui.app import service
from amltui.app.errors import UserError
from amltui.app.runs.store import Store
from amltui.app.service import ReproduceRequest
from amltui.app.service.reproduce import Listener
from amltui.cli import options as o
from amltui.cli.common import console, err, open_store, parse_list, reap_lost, user_errors
from amltui.cli.help_text import Command
from amltui.cli.lifecycle import _follow, dispatch
from amltui.cli.progress_bars import RunProgress
from core.config import VARIANTS

ALL_VARIANTS = ",".join(VARIANTS)


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(reproduce)


class CliFront:
    """The terminal side of the sequence: plain lines, Rich progress bars, foreground runs."""

    def __init__(self, wide: bool = False, yes: bool = False) -> None:
        self.wide = wide  # --wide: the end-of-run table with every column
        self.yes = yes  # --yes: a long step is announced, not asked about

    def say(self, text: str) -> None:
        console.print(text, highlight=False, markup=False)

    def warn(self, text: str) -> None:
        err.print(text, highlight=False, markup=False)

    def confirm(self, text: str) -> None:
        """Announce a step projected over 10 minutes; ask on a terminal, refuse without one unless --yes."""
        self.say(text)
        if self.yes:
            return
        if not sys.stdin.isatty():
            raise UserError("refusing to start a step projected over 10 minutes without confirmation",
                            "pass --yes to run it anyway, or make it cheaper (--robust-subset, --no-autoattack, "
                            "--set aa_version=standard-fast)")
        if not typer.confirm("start it?", default=False):
            raise UserError("not started (answered no); the runs are kept, and a rerun reuses them", code=1)

    @contextlib.contextmanager
    def progress(self) -> Iterator[Listener]:
        with RunProgress(console) as bars:
            yield bars.on_event

    def run(self, store: Store, ids: list[str], request: ReproduceRequest) -> int:
        return _exit_code(lambda: dispatch(store, ids, request, detach=request.detach, wide=self.wide))

    def wait(self, store: Store, ids: list[str]) -> int:
        return _exit_code(lambda: _follow(store, ids, cancel=lambda: None, reconcile=reap_lost,
                                          wide=self.wide))


def _exit_code(step) -> int:
    """A step's exit code (1: some run did not finish); Ctrl-C (130) still ends the command."""
    try:
        step()
    except typer.Exit as exc:
        if exc.exit_code == 130:
            raise
        return exc.exit_code
    return 0


def reproduce(
    preset: o.PresetOpt = "quick",
    seeds: o.Seeds = "0,1,2",
    variants: o.Variants = ALL_VARIANTS,
    detach: Annotated[bool, typer.Option("--detach", help="Queue and return; rerun to write the report.")] = False,
    human_sets: Annotated[bool, typer.Option("--human-sets", help="Score Tramèr et al.'s human-labelled sets "
                                             "(download, or --human-sets-dir); MNIST-digit datasets only.")] = False,
    human_sets_dir: Annotated[Path | None, typer.Option(help="Local copy of invariance_examples/.")] = None,
    curves: Annotated[bool, typer.Option("--curves", help="Compute each finished run's accuracy-vs-ε curve "
                                         "(as `eval --curve`; cached) for the report's robustness.png.")] = False,
    autoattack: Annotated[bool, typer.Option("--autoattack/--no-autoattack", help="Compute A_AA (as `eval "
                                             "--autoattack`, on --robust-subset images; cached) for each finished "
                                             "run that lacks it.")] = True,
    robust_checks: Annotated[bool, typer.Option("--robust-checks/--no-robust-checks", help="Sanity checks (a) "
                                                "large ε, (c) Square, (d) FGSM vs PGD on --robust-subset images "
                                                "(cached): a model that masks PGD too is flagged.")] = True,
    robust_subset: Annotated[int, typer.Option(help="Stratified test images per run for A_AA and the checks.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Report folder [default: in <runs-dir>/reports/, named by the "
                                              "dataset, preset, changed keys and seeds].")] = None,
    wide: o.Wide = False,
    yes: Annotated[bool, typer.Option("--yes", help="Start a robustness step projected over 10 minutes without "
                                      "asking.")] = False,
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
    """Reproduce Table 1 and Figure 1: invariance sets, variants × seeds, then a report folder.

    Idempotent: finished runs and cached invariance sets are reused, interrupted runs resume.
    """
    request = ReproduceRequest(
        variants=parse_list(variants, "--variants"), seeds=parse_list(seeds, "--seeds", int), preset=str(preset),
        detach=detach, human_sets=human_sets, human_sets_dir=human_sets_dir, curves=curves, autoattack=autoattack,
        robust_checks=robust_checks, robust_subset=robust_subset, out=out,
        command="amltui " + " ".join(sys.argv[1:]), dataset=o.text(dataset), data_dir=o.text(data_dir),
        epochs=epochs, train_subset=train_subset, test_subset=test_subset, overrides=list(set_ or []),
        executor=str(executor), gpus=gpus, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots, partition=partition,
        time_limit=time_limit, gpus_per_node=gpus_per_node)
    with user_errors():
        configs = service.check_request(request)  # before the store: a refused command writes nothing
    store = open_store(runs_dir, create=True)
    with user_errors():
        report, code = service.reproduce(store, request, CliFront(wide, yes), configs)
    if report is not None:
        console.print(f"report: {report}", markup=False, highlight=False, soft_wrap=True)  # one line: copyable
    if code:
        raise typer.Exit(code)
