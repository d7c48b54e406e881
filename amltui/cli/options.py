"""The command line's shared options: one ``Annotated`` alias per option, and Enums for choices (so `--help`
shows ``[a|b|c]`` and Typer refuses anything else). The choices come from core/config.py CHOICES.

Each command declares every parameter it takes (``dataset: o.DatasetOpt = None``) and builds its service request
from them by name; the order of the parameters is the order of the options in its `--help`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from amltui.app.gpus import MAX_MEM_DEFAULT, MAX_UTIL_DEFAULT
from amltui.app.results.report import FORMATS
from amltui.app.runs import sweeps
from amltui.app.service import EXECUTORS, DispatchOptions
from core.config import CHOICES
from core.metrics import METRIC_ORDER


def _choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    return StrEnum(name, {v: v for v in values})  # type: ignore[return-value]


Variant = _choices("Variant", CHOICES["variant"])
Preset = _choices("Preset", CHOICES["preset"])
Dataset = _choices("Dataset", CHOICES["dataset"])
InvMode = _choices("InvMode", CHOICES["inv_mode"])
Executor = _choices("Executor", EXECUTORS)
Format = _choices("Format", FORMATS)
Split = _choices("Split", ("train", "test"))
SplitOrAll = _choices("SplitOrAll", ("train", "test", "all"))


def runs_dir_path(value: str) -> Path:
    """--runs-dir: an empty value is refused (Path("") would silently be the current folder)."""
    if not value.strip():
        raise typer.BadParameter("is empty; give the runs folder's path, or leave --runs-dir out for "
                                 "$AMLTUI_RUNS_DIR or ./runs")
    return Path(value)


def whole_number(value: str) -> int:
    """A whole-number option in ASCII digits (int() alone also reads '٣' as 3 and '1_000' as 1000)."""
    text = value.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise typer.BadParameter(f"{value!r} is not a whole number in ASCII digits (0-9)")
    return int(text)


def text(value: StrEnum | Path | str | None) -> str | None:
    """An option's plain value (Typer hands Enum members and Paths; the service's requests hold strings)."""
    return None if value is None else str(value)


# A repeatable option shows the type of one value (`--set <str>`), not Typer's `<list[str]>`.
ONE_VALUE = "<str>"

RunsDir = Annotated[
    Path | None,
    typer.Option("--runs-dir", parser=runs_dir_path, metavar="PATH",
                 help="Folder of runs and the store [default: $AMLTUI_RUNS_DIR or ./runs]."),
]
RunArg = Annotated[str, typer.Argument(metavar="RUN", help="Run id (or a unique prefix of it).")]
RunArgs = Annotated[list[str], typer.Argument(metavar="RUN...", help="Run ids (or unique prefixes).")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Wide = Annotated[bool, typer.Option("--wide", help="Every column, whatever the terminal's width (a pipe gets "
                                    "whole rows anyway, unless $COLUMNS names a width).")]
Where = Annotated[list[str] | None, typer.Option(
    metavar=ONE_VALUE, help="Only runs with key=value in their record or config (e.g. dataset=mnist, tags=paper); "
    "repeatable. Unknown keys and values are refused with a suggestion.")]

# What a run is
Variants = Annotated[str, typer.Option("--variants", "--variant",
                                       help=f"Comma-separated: {', '.join(CHOICES['variant'])}.")]
Seeds = Annotated[str, typer.Option("--seeds", "--seed", help="Seeds: a list, a range or both, e.g. 0,1,2 or 0-2 "
                                    "or 0-2,7.")]
PresetOpt = Annotated[Preset, typer.Option("--preset", help="Hyperparameter preset.")]
DatasetOpt = Annotated[Dataset | None, typer.Option("--dataset", help="The data [default: the preset's: mnist for "
                                                    "paper, mnist-sample otherwise].")]
DataDir = Annotated[Path | None, typer.Option(help="Folder with the four idx files (gz or not).")]
Epochs = Annotated[int | None, typer.Option(parser=whole_number, metavar="INTEGER",
                                            help="Override the preset's epochs.")]
TrainSubset = Annotated[int | None, typer.Option(parser=whole_number, metavar="INTEGER",
                                                 help="Train on N images (stratified, seed 0).")]
TestSubset = Annotated[int | None, typer.Option(parser=whole_number, metavar="INTEGER",
                                                help="Evaluate on N test images (stratified).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (scheduled runs: the slot decides).")]
EvalDevice = Annotated[str | None, typer.Option("--device", help="Device [default: the run's].")]
Threads = Annotated[int | None, typer.Option(parser=whole_number, metavar="INTEGER",
                                             help="CPU threads per run [default: the slot's cores].")]
SetOverrides = Annotated[list[str] | None, typer.Option("--set", metavar=ONE_VALUE, help="Override a config key: "
                                                        "--set lr=3e-4 (repeatable; `amltui config-keys` lists them).")]
Grid = Annotated[list[str] | None, typer.Option("--grid", metavar=ONE_VALUE, help=sweeps.GRID_HELP)]
Sweep = Annotated[str | None, typer.Option(help="Sweep name recorded in each run [default: generated with --grid]; "
                                           "`export --sweep NAME`, `plot --sweep NAME`.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help=f"Queue more than {sweeps.CONFIRM_ABOVE} runs without "
                                   "asking.")]
Repeat = Annotated[bool, typer.Option("--repeat", help="Start a fresh run even when an identical finished run "
                                      "(same config, seed, data and code) exists; tables count the latest.")]

# Frontier axes (`plot --sweep`): the metric names are listed, the values checked by amltui/app/results/frontier.py
MetricX = Annotated[str, typer.Option("--x", help=f"--sweep: metric on the x axis: {', '.join(METRIC_ORDER)}.")]
MetricY = Annotated[str, typer.Option("--y", help=f"--sweep: metric on the y axis: {', '.join(METRIC_ORDER)}.")]

# Where runs go (their defaults are the service's: `executor: o.ExecutorOpt = o.DISPATCH.executor`)
DISPATCH = DispatchOptions()
ExecutorOpt = Annotated[Executor, typer.Option("--executor", help="Where the runs go: this machine or Slurm.")]
Gpus = Annotated[str | None, typer.Option(
    help="GPUs by position among the visible ones (CUDA_VISIBLE_DEVICES order), e.g. 0,1 [default: all visible]; "
    "'auto' = those not busy (re-checked before each run); 'none' = CPU. See `amltui gpus`.")]
SlotsPerGpu = Annotated[str, typer.Option(
    help="Concurrent runs per GPU, or 'auto': as many as fit in its free memory (measured per config).")]
GpuMaxUtil = Annotated[float | None, typer.Option(
    help=f"--gpus auto: a GPU at or above this utilisation (%) is busy [default: {MAX_UTIL_DEFAULT:g}, or "
    "$AMLTUI_GPU_MAX_UTIL].")]
GpuMaxMem = Annotated[float | None, typer.Option(
    help=f"--gpus auto: a GPU with this share of its memory (%) used by others is busy [default: "
    f"{MAX_MEM_DEFAULT:g}, or $AMLTUI_GPU_MAX_MEM].")]
CpuSlots = Annotated[int | None, typer.Option(parser=whole_number, metavar="INTEGER",
                                              help="Concurrent runs without a GPU [default: 1/8 cores].")]
Detach = Annotated[bool, typer.Option("--detach", help="Return at once; runs go on (see `amltui ls`).")]
Partition = Annotated[str | None, typer.Option(help="Slurm partition.")]
TimeLimit = Annotated[int, typer.Option("--time", help="Slurm time limit per run, minutes.")]
GpusPerNode = Annotated[int, typer.Option(help="Slurm GPUs per job.")]

# Invariance examples
InvModeOpt = Annotated[InvMode, typer.Option("--mode", help="exact (full search) or fast (shortlist + exact "
                                             "re-ranking).")]
Eps = Annotated[float, typer.Option(help="L∞ budget in pixel units.")]

