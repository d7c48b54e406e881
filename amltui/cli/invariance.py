"""`amltui invariance`: generate (and cache) Tramèr et al.'s invariance examples, and preview them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from amltui.cli import options as o
from amltui.cli.common import console, err, fail, open_store, user_errors
from amltui.cli.help_text import Command, Group
from amltui.cli.progress_bars import RunProgress
from core.config import ConfigError, RunConfig

if TYPE_CHECKING:
    from core.data import Dataset

app = typer.Typer(help="Invariance examples (Tramèr et al. 2020, L∞): generate, cache, preview.",
                  no_args_is_help=True, cls=Group)


def register(parent: typer.Typer) -> None:
    app.command(cls=Command)(generate)
    app.command(cls=Command)(show)
    parent.add_typer(app, name="invariance")


# The options both commands share (a set is per dataset, subset, ε and search mode).
DataOf = Annotated[o.Dataset, typer.Option("--dataset", help="The data the examples are made from.")]
SubsetOf = Annotated[int | None, typer.Option(help="As for `amltui run`: sets are per data subset.")]
SET_DATASET, SET_EPS, SET_MODE = "mnist-sample", 0.3, "fast"  # both commands' defaults


def _dataset(dataset: str, data_dir: Path | None, train_subset: int | None, test_subset: int | None) -> Dataset:
    """The data of the set options (dataset, data dir, subsets)."""
    from amltui.app.science.loading import load_run_data
    from core.data import DataNotFoundError

    try:
        config = RunConfig.resolve("baseline", "quick", dataset=str(dataset), data_dir=o.text(data_dir),
                                   train_subset=train_subset, test_subset=test_subset)
        return load_run_data(config)
    except (ConfigError, DataNotFoundError, ValueError) as exc:
        fail(str(exc))


def generate(
    split: Annotated[o.SplitOrAll, typer.Option(help="Which split's set.")] = "all",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads [default: all available].")] = None,
    dataset: DataOf = SET_DATASET,
    data_dir: o.DataDir = None,
    eps: o.Eps = SET_EPS,
    mode: o.InvModeOpt = SET_MODE,
    train_subset: SubsetOf = None,
    test_subset: SubsetOf = None,
    runs_dir: o.RunsDir = None,
) -> None:
    """Make and cache the invariance set of a split (one example per image), under <runs-dir>/cache/.

    Interrupted generation keeps its finished chunks and resumes; a second call reuses the cache.
    """
    from amltui.app.science.invariance import generate_split
    from core.attacks.invariance_cache import default_cache_root
    from core.device import resolve_device, set_threads

    mode = str(mode)
    if not 0 < eps <= 1:
        fail(f"--eps {eps}: the L∞ budget is in pixel units of [0, 1] images (e.g. 0.3)")
    set_threads(threads)
    with user_errors():
        dev = resolve_device(device)
    store = open_store(runs_dir, create=True)
    data = _dataset(dataset, data_dir, train_subset, test_subset)
    console.print(f"{data.name} ({data.fingerprint}): {len(data.train)} train / {len(data.test)} test images, "
                  f"ε={eps}, mode {mode}, on {dev}; cache {default_cache_root(store.runs_dir)}", highlight=False,
                  markup=False)

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)

    with RunProgress(console) as progress:
        for part in (("train", "test") if split == "all" else (str(split),)):
            def report(done: int, total: int, part: str = part) -> None:
                progress.on_event("invariance", {"split": part, "done": done, "total": total})

            try:
                lines = generate_split(data, part, eps, mode, store.runs_dir, dev, report, warn)
            except KeyboardInterrupt:
                err.print("interrupted: finished chunks are kept; rerun the same command to resume")
                raise typer.Exit(130) from None
            for line in lines:
                console.print(line, highlight=False, markup=False)


def show(
    split: Annotated[o.Split, typer.Option(help="Which split's examples.")] = "test",
    n: Annotated[int, typer.Option("-n", help="How many examples to show.", min=1)] = 12,
    out: Annotated[Path | None, typer.Option(help="PNG to write (a folder: the default name in it) "
                                              "[default: <runs-dir>/invariance-<dataset>-<split>.png].")] = None,
    dataset: DataOf = SET_DATASET,
    data_dir: o.DataDir = None,
    eps: o.Eps = SET_EPS,
    mode: o.InvModeOpt = SET_MODE,
    train_subset: SubsetOf = None,
    test_subset: SubsetOf = None,
    runs_dir: o.RunsDir = None,
) -> None:
    """Preview examples as a PNG grid: the image x, its aligned neighbour n and x*, with labels and targets.

    Uses the cached set when there is one; otherwise generates just the first N examples (not cached).
    """
    from amltui.app.results.png_figures import png_path
    from amltui.app.science.invariance import preview

    store = open_store(runs_dir, create=True)
    data = _dataset(dataset, data_dir, train_subset, test_subset)
    name = f"invariance-{data.name}-{split}.png"
    path = png_path(out, name) if out is not None else store.runs_dir / name
    with user_errors(f"cannot write --out {path}: "):
        path = preview(data, str(split), n, eps, str(mode), store.runs_dir, path,
                       lambda text: console.print(text, markup=False, highlight=False))
    console.print(f"wrote {path}", markup=False, highlight=False)
