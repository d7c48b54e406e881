"""Commands that read runs: ls, show, eval, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from amltui.cli.common import (
    RunArg,
    RunsDir,
    all_records,
    console,
    describe_os_error,
    err,
    fail,
    open_store,
    print_metrics,
    reap_lost,
    resolve_run,
    status_text,
    warn_damaged,
    warn_unindexed,
)
from amltui.progress import RunProgress
from amltui.report import FORMATS, aggregate, render
from amltui.runs import EVALUABLE, RunFailure, evaluate_human_sets, evaluate_run, run_dir
from core.metrics import METRIC_LABELS, METRIC_ORDER


def register(app: typer.Typer) -> None:
    app.command()(plot)
    app.command("ls")(ls)
    app.command()(show)
    app.command("eval")(eval_)
    app.command()(export)


def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """List runs. A run whose record or folder is damaged is listed as "damaged", with the reason on stderr."""
    store = open_store(runs_dir)
    reap_lost(store)
    records = all_records(store)
    if status:
        records = [r for r in records if r.get("status") == status]
    if as_json:
        keys = ("id", "variant", "seed", "dataset", "preset", "status", "epoch", "epochs", "metrics", "metrics_n",
                "pid", "host", "slot", "device", "executor", "slurm_job_id", "created", "started", "ended", "error",
                "damaged")
        typer.echo(json.dumps([{k: r.get(k) for k in keys} for r in records], indent=1))
        warn_unindexed(store, records)
        return
    if not records:
        if not warn_unindexed(store, records):
            console.print(f"no runs in {store.runs_dir} (start one with `amltui run`)", markup=False)
        return
    console.print(runs_table(records, console.width))
    warn_damaged(records)
    warn_unindexed(store, records)


# Columns of `amltui ls`, most important first: on a narrow terminal the last ones are left out, not squeezed.
LS_COLUMNS = ("id", "status", "epoch", "A_orig", "A_SA", "A_IA", "A_PGD", "variant", "seed", "dataset",
              "A_IA_target", "slot")


def runs_table(records: list[dict], width: int) -> Table:
    """The runs as a table that fits ``width`` columns by dropping the least important columns."""
    def cell(r: dict, col: str) -> str:
        metrics = r.get("metrics") or {}
        if col in METRIC_ORDER:
            return f"{metrics[col]:.2f}" if col in metrics else ""
        if col == "epoch":
            return f"{r.get('epoch', 0)}/{r.get('epochs', '?')}"
        return str(r.get(col) if r.get(col) is not None else "")

    def title(col: str) -> str:
        return METRIC_LABELS.get(col, col).replace("A_IA→target", "→tgt")

    present = [c for c in LS_COLUMNS if c not in METRIC_ORDER or any(cell(r, c) for r in records)]
    widths = {c: max([len(title(c))] + [len(cell(r, c)) for r in records]) for c in present}
    while len(present) > 3 and sum(widths[c] + 3 for c in present) > width:
        present.pop()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in present:
        table.add_column(title(col), no_wrap=True, justify="right" if col in METRIC_ORDER else "left")
    for r in records:
        table.add_row(*(status_text(cell(r, c)) if c == "status" else escape(cell(r, c)) for c in present))
    return table


def show(run: RunArg, runs_dir: RunsDir = None) -> None:
    """Show one run: its record, resolved config and per-epoch metrics."""
    store = open_store(runs_dir)
    reap_lost(store)
    record = resolve_run(store, run)
    rd = run_dir(store.runs_dir, record["id"])
    console.print(f"[bold]{record['id']}[/]  {status_text(record.get('status', ''))}  folder {escape(str(rd.path))}")
    for key in ("variant", "preset", "seed", "dataset", "fingerprint", "device", "code_version", "created",
                "started", "ended", "error"):
        if record.get(key) is not None:
            console.print(f"  {key}: {record[key]}", highlight=False, markup=False)
    if record.get("traceback"):
        console.print("  traceback (tail):\n" + str(record["traceback"]), highlight=False, markup=False)
    try:
        config = rd.read_config().to_dict()
        console.print("  config: " + ", ".join(f"{k}={v}" for k, v in config.items()), highlight=False,
                      markup=False)
    except (OSError, ValueError) as exc:
        console.print(f"  config: unreadable ({exc})", highlight=False, markup=False)
    try:
        lines = rd.read_metrics()
    except (OSError, ValueError) as exc:
        err.print(f"metrics.jsonl unreadable: {exc}", highlight=False, markup=False)
        lines = []
    epochs = [m for m in lines if m.get("kind") == "epoch"]
    if epochs:
        table = Table(title="epochs")
        cols = ["epoch", "train_loss", "train_ce_clean", "train_ce_adv", "train_triplet_sa", "train_triplet_ia",
                "monitor_A_orig", "monitor_A_SA", "seconds"]
        cols = [c for c in cols if any(c in m for m in epochs)]
        for c in cols:
            table.add_column(c.replace("train_", "").replace("monitor_", "mon "), justify="right")
        for m in epochs:
            table.add_row(*(f"{m[c]:.4g}" if isinstance(m.get(c), float) else escape(str(m.get(c, ""))) for c in cols))
        console.print(table)
    if record.get("metrics"):
        print_metrics(record)


def eval_(
    run: RunArg,
    device: Annotated[str | None, typer.Option(help="Device for the evaluation [default: the run's].")] = None,
    human_sets: Annotated[bool, typer.Option("--human-sets", help="Also score Tramèr et al.'s human-labelled "
                                             "invariance sets (instead of re-running the test metrics).")] = False,
    from_dir: Annotated[Path | None, typer.Option(help="Local copy of invariance_examples/ "
                                                  "[default: download where the network allows].")] = None,
    mnist_dir: Annotated[Path | None, typer.Option(help="MNIST idx folder, for the original test labels "
                                                   "[default: the run's data if it is full MNIST].")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Evaluate a run from its checkpoint (A_orig, A_SA, A_IA, A_IA→target, A_PGD) and record the metrics."""
    store = open_store(runs_dir)
    record = resolve_run(store, run)
    status = record.get("status")
    if status == "damaged":
        fail(f"run {record['id']} cannot be evaluated: it is damaged ({record.get('damaged')})")
    if status not in EVALUABLE:
        fail(f"run {record['id']} is {status}: only a finished run (done, failed or cancelled) can be evaluated; "
             f"wait for it to end or `amltui cancel {record['id']}` it first")
    if human_sets:
        try:
            results = evaluate_human_sets(store, record["id"], from_dir=from_dir, mnist_dir=mnist_dir, device=device)
        except RunFailure as exc:
            fail(str(exc), code=1)
        _print_human_sets(record["id"], results)
        return
    with RunProgress(console) as progress:
        try:
            record = evaluate_run(store, record["id"], device=device, listener=progress.on_event)
        except RunFailure as exc:
            fail(str(exc), code=1)
    print_metrics(record)


def _print_human_sets(run_id: str, results: dict) -> None:
    table = Table(title=f"{run_id}: human-labelled invariance sets (Tramèr et al. 2020)", box=box.SIMPLE_HEAD,
                  caption="acc: % = human label; changed: human label ≠ original; follow/keep: % of those "
                  "predicted as the human / original label; >ε: examples past the L∞ ball (8-bit rounding)")
    table.add_column("set", no_wrap=True)
    for col in ("n", "acc", "changed", "follow", "keep", ">ε"):
        table.add_column(col, justify="right")

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    for name, r in results["sets"].items():
        outside = "–" if r["max_excess"] is None else f"{r['outside_budget']} (+{r['max_excess']:.3f})"
        table.add_row(name, str(r["n"]), pct(r["acc_human"]),
                      str(r["n_changed"]) if results["have_originals"] else "–",
                      pct(r["follow_human"]), pct(r["keep_original"]), outside)
    console.print(table)
    if not results["have_originals"]:
        console.print("original MNIST test labels unavailable (the run is not on full MNIST): pass --mnist-dir to "
                      "split the label-changing examples into follow-human / keep-original")


def plot(
    run: RunArg,
    pca: Annotated[bool, typer.Option("--pca", help="PCA of h(x), natural vs FGSM (Figure 1).")] = True,
    n: Annotated[int, typer.Option("-n", help="Test images to embed (stratified).")] = 2000,
    out: Annotated[Path | None, typer.Option(help="PNG path [default: <run>/pca.png].")] = None,
    device: Annotated[str | None, typer.Option(help="Device [default: the run's].")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Write a run's figure: the 2-D PCA of h(x) for natural and FGSM-perturbed test images."""
    from amltui.figures import png_path
    from amltui.plots import write_pca

    if not pca:
        fail("nothing to plot: --pca is the only figure so far")
    store = open_store(runs_dir)
    record = resolve_run(store, run)
    if out is not None:
        out = png_path(out, f"{record['id']}-pca.png")
    try:
        path = write_pca(store, record["id"], n=n, device=device, out=out)
    except RunFailure as exc:
        fail(str(exc), code=1)
    except OSError as exc:
        fail(f"cannot write the figure: {describe_os_error(exc)}")
    console.print(f"wrote {path}", highlight=False, markup=False)


def export(
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of: {', '.join(FORMATS)}.")] = "md",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of printing.")] = None,
    where: Annotated[list[str] | None, typer.Option(help="Only runs with key=value in their record "
                                                    "(e.g. dataset=mnist); repeatable.")] = None,
    with_runs: Annotated[bool, typer.Option("--with-runs", help="List the run ids behind each row.")] = False,
    group_by: Annotated[str | None, typer.Option(help="Pool by these record/config keys, e.g. variant,dataset "
                                                 "[default: pool only runs equal in all but the seed].")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Results table: mean ± std over seeds with n, paired differences against the baseline."""
    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if out is not None and out.is_dir():
        fail(f"--out {out} is a folder; give a file path, e.g. {out / ('results.' + fmt)}")
    store = open_store(runs_dir)
    records = all_records(store)
    warn_unindexed(store, records)
    warn_damaged(records, " (left out of the table)")
    for item in where or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--where {item!r} is not of the form key=value")
        records = [r for r in records if str(r.get(key)) == value]
    keys = [k.strip() for k in group_by.split(",") if k.strip()] if group_by else None
    text = render(aggregate(records, group_by=keys), fmt, with_runs=with_runs)
    if out:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write --out {out}: {describe_os_error(exc)}")
        console.print(f"wrote {out}", highlight=False, markup=False)
    else:
        typer.echo(text, nl=False)


