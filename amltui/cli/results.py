"""Commands that read runs: ls, show, eval, export."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from amltui.app import service
from amltui.app.errors import RunFailure, UserError
from amltui.app.fsutil import check_output_path
from amltui.app.results import human_agreement
from amltui.app.results.curves import read_curve, write_curve_png
from amltui.app.results.report_notes import aa_note
from amltui.app.runs.filters import STATUSES
from amltui.app.runs.folders import run_dir
from amltui.app.runs.records import DAMAGED
from amltui.app.safetext import markup_safe
from amltui.app.science.evaluation import EVALUABLE, HumanSetsRefused, evaluate_human_sets, evaluate_run
from amltui.app.service import RobustnessRequest
from amltui.app.service.export import check_aa_version
from amltui.cli import options as o
from amltui.cli import run_details, runs_listing
from amltui.cli.common import (
    FLAG_MARK,
    all_records,
    console,
    describe_os_error,
    err,
    fail,
    open_store,
    print_metrics,
    print_table,
    reap_lost,
    resolve_run,
    status_text,
    table_width,
    user_errors,
    warn_damaged,
    warn_unindexed,
)
from amltui.cli.help_text import Command
from amltui.cli.progress_bars import RunProgress
from amltui.termplot.curves import curve_chart, curve_table
from amltui.termplot.frontier import frontier_renderable
from core.aa_spec import describe_aa


def register(app: typer.Typer) -> None:
    for command, name in ((plot, None), (ls, "ls"), (show, None), (eval_, "eval"), (export, None)):
        app.command(name, cls=Command)(command)


def ls(
    as_json: o.AsJson = False,
    status: Annotated[list[str] | None, typer.Option(metavar=o.ONE_VALUE, help="Only runs with this status "
                                                     f"(repeatable, or a comma list): {', '.join(STATUSES)}.")] = None,
    where: o.Where = None,
    sort: Annotated[str | None, typer.Option(help="Order by a record field, config key or metric, e.g. created, "
                                             "A_PGD; -KEY (or --reverse) for descending [default: the store's "
                                             "order].")] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Descending order (with --sort).")] = False,
    wide: o.Wide = False,
    runs_dir: o.RunsDir = None,
) -> None:
    """List runs, with each one's progress, metrics and failure reason.

    A run whose record or folder is damaged is listed as "damaged", with the reason on stderr. A running run in a
    long quiet phase shows that phase's own progress (inv 120/1000, eval A_PGD 3/10) instead of its epoch.
    """
    store = open_store(runs_dir)
    reap_lost(store)
    everything = all_records(store)
    with user_errors():
        records, emptied = runs_listing.select(everything, status, where)
        rows = runs_listing.rows_of(records, store)
        if sort:
            rows = runs_listing.sorted_rows(rows, sort, reverse)
        records = [row.record for row in rows]
    if as_json:
        typer.echo(json.dumps([{k: r.get(k) for k in LS_JSON_KEYS} | {"flags": r.get("flags") or []}
                               for r in records], indent=1))
        warn_unindexed(store, everything)
        return
    if emptied:
        console.print(emptied, highlight=False, markup=False)
        return
    if not records:
        if not warn_unindexed(store, everything):
            console.print(f"no runs in {store.runs_dir} (start one with `amltui run`)", markup=False)
        return
    width = table_width(wide)
    table, dropped = runs_listing.fit_runs_table(rows, width)
    print_table(table, width, dropped)
    if aa := aa_note(records):  # which AutoAttack, its iterations, ε and n: a number needs its attack
        console.print(aa, highlight=False, markup=False, soft_wrap=True)
    flagged = sorted({str(f) for r in records for f in r.get("flags") or []})
    if flagged:
        console.print(f"{FLAG_MARK} flagged: {', '.join(flagged)} — `amltui show RUN` gives the rule and the numbers",
                      highlight=False, markup=False)
    warn_damaged(records)
    warn_unindexed(store, everything)


LS_JSON_KEYS = ("id", "variant", "seed", "dataset", "preset", "status", "epoch", "epochs", "metrics", "metrics_n",
                "pid", "host", "slot", "gpu", "gpu_peak_mib", "device", "executor", "slurm_job_id", "created",
                "started", "ended", "error", "select", "selected_epoch", "flags", "flag_details", DAMAGED, "tags",
                "note", "sweep")
runs_table = runs_listing.runs_table  # tests and older callers import it from here


SHOW_EPOCHS = 100  # rows of show's epoch table
SHOW_METRIC_LINES = 1000  # lines read from the end of metrics.jsonl to find them


def show(run: o.RunArg, runs_dir: o.RunsDir = None) -> None:
    """Show one run: its record, resolved config and per-epoch metrics."""
    store = open_store(runs_dir)
    reap_lost(store)
    record = resolve_run(store, run)
    rd = run_dir(store.runs_dir, record["id"])
    console.print(f"[bold]{markup_safe(record['id'])}[/]  {status_text(record.get('status', ''))}  "
                  f"folder {markup_safe(str(rd.path))}")
    console.print(run_details.kv_grid(run_details.record_pairs(record), console.width))
    run_details.print_error(console, record)
    try:
        config = rd.read_config().to_dict()
        console.print(f"config ({len(config)} keys; `amltui config-keys` explains them)", highlight=False)
        console.print(run_details.kv_grid(run_details.config_pairs(config), console.width))
    except (OSError, ValueError) as exc:
        console.print(f"  config: unreadable ({exc})", highlight=False, markup=False)
    try:
        lines = rd.read_metrics(tail=SHOW_METRIC_LINES)  # only the tail: a metrics.jsonl may be huge
    except (OSError, ValueError) as exc:
        err.print(f"metrics.jsonl unreadable: {exc}", highlight=False, markup=False)
        lines = []
    epochs = [m for m in lines if m.get("kind") == "epoch"]
    if len(epochs) > SHOW_EPOCHS:
        console.print(f"(the last {SHOW_EPOCHS} epochs; metrics.jsonl holds them all)", highlight=False)
        epochs = epochs[-SHOW_EPOCHS:]
    if epochs:
        where = (f"hold-out of {record.get('n_holdout')} training images" if record.get("monitor") == "holdout"
                 else "test subset, curves only")
        console.print(run_details.epoch_table(epochs, where))
        triplets = run_details.triplet_table(epochs, (record.get("config") or {}).get("distance", "abs_cos"))
        if triplets is not None:
            console.print(triplets)
    if record.get("metrics"):
        print_metrics(record)
    print_human_agreement(record)
    print_robustness(record, rd)


def print_human_agreement(record: dict) -> None:
    """Agreement with Tramèr et al.'s human labels per set, split where the human label changed (`eval
    --human-sets` stores it)."""
    sets = (record.get("human_sets") or {}).get("sets") or {}
    if sets:
        console.print("human-label agreement % (Tramèr et al. 2020; changed: human label ≠ original):",
                      highlight=False, markup=False)
    for name, result in sets.items():
        console.print(f"  {name}: {human_agreement.split_text(result)}", highlight=False, markup=False)


def eval_(
    run: o.RunArg,
    device: Annotated[str | None, typer.Option(help="Device for the evaluation [default: the run's].")] = None,
    human_sets: Annotated[bool, typer.Option("--human-sets", help="Score Tramèr et al.'s human-labelled "
                                             "invariance sets instead of re-running the test metrics (MNIST-digit "
                                             "runs only: mnist, mnist-sample).")] = False,
    human_sets_dir: Annotated[Path | None, typer.Option(help="Local copy of invariance_examples/ (the same option "
                                                        "as `reproduce --human-sets-dir`) [default: download where "
                                                        "the network allows].")] = None,
    from_dir: Annotated[Path | None, typer.Option(hidden=True, help="Old name of --human-sets-dir.")] = None,
    mnist_dir: Annotated[Path | None, typer.Option(help="MNIST idx folder, for the original test labels "
                                                   "[default: the run's data if it is full MNIST].")] = None,
    autoattack: Annotated[bool, typer.Option("--autoattack", help="A_AA: AutoAttack (torchattacks; the run's "
                                             "aa_version, default standard) at ε_s on the robustness subset, "
                                             "with the per-attack breakdown in <run>/autoattack.json.")] = False,
    curve: Annotated[bool, typer.Option("--curve", help="Accuracy vs ε for FGSM, PGD (and AutoAttack at ε_s with "
                                        "--autoattack or eval_aa; at more ε with --aa-eps): <run>/curve.json and "
                                        "curve.png.")] = False,
    checks: Annotated[bool, typer.Option("--checks", help="Sanity checks (a)–(e) of Carlini et al. 2019; failures "
                                         "go to the run's flags (docs/robustness.md).")] = False,
    subset: Annotated[int | None, typer.Option(help="Test images (stratified) for --autoattack/--curve/--checks "
                                               "[default: the run's aa_subset].", min=1)] = None,
    eps_grid: Annotated[str | None, typer.Option(help="ε values of the curve, comma-separated "
                                                 "[default: 9 points from 0 to 2·ε_s].")] = None,
    pgd_steps: Annotated[int | None, typer.Option(help="PGD steps for the curve and checks "
                                                  "[default: the run's pgd_steps].", min=1)] = None,
    restarts: Annotated[int, typer.Option(help="PGD random restarts per point of the curve.", min=1)] = 1,
    aa_eps: Annotated[str | None, typer.Option(help="ε values where the curve also runs AutoAttack, comma-separated "
                                               "(each can take an hour on a CPU) [default: ε_s only].")] = None,
    aa_version: Annotated[str | None, typer.Option(help="AutoAttack version for this evaluation, e.g. standard-fast "
                                                   "(torchattacks' 10-iteration ensemble) [default: the run's "
                                                   "aa_version, standard].")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start an evaluation projected over 10 minutes without "
                                      "asking (the estimate is printed first).")] = False,
    runs_dir: o.RunsDir = None,
) -> None:
    """Evaluate a run from its checkpoint (A_orig, A_SA, A_IA, A_IA→target, A_PGD) and record the metrics.

    With --autoattack / --curve / --checks only those are computed (plus the base metrics if the run has none);
    every measurement is cached in the run folder per (checkpoint, attack, ε, subset).
    """
    store = open_store(runs_dir)
    reap_lost(store)  # settles a run whose index lags its run.json before judging it
    record = _evaluable(resolve_run(store, run))
    if human_sets:
        return _human_sets(store, record["id"], human_sets_dir or from_dir, mnist_dir, device)
    with user_errors():
        grid = service.parse_grid(eps_grid) if eps_grid else None
        aa_grid = service.parse_grid(aa_eps, "--aa-eps") if aa_eps else None
        version = check_aa_version(aa_version) if aa_version else None
    robust = RobustnessRequest(autoattack, curve, checks, subset, grid, pgd_steps, restarts, device, aa_grid, version)
    record = _evaluate(store, record, robust, confirm=_announce_long if yes else _confirm_long)
    print_metrics(record)
    print_robustness(record, run_dir(store.runs_dir, record["id"]), curve=curve)


def _human_sets(store, run_id: str, folder: Path | None, mnist_dir: Path | None, device: str | None) -> None:
    try:
        results = evaluate_human_sets(store, run_id, from_dir=folder, mnist_dir=mnist_dir, device=device)
    except HumanSetsRefused as exc:
        fail(str(exc))
    except RunFailure as exc:
        fail(str(exc), code=1)
    _print_human_sets(run_id, results)


def _evaluable(record: dict) -> dict:
    """The run, if it has ended in a way that leaves a model to evaluate."""
    status = record.get("status")
    if status == DAMAGED:
        fail(f"run {record['id']} cannot be evaluated: it is damaged ({record.get(DAMAGED)})")
    if status not in EVALUABLE:
        fail(f"run {record['id']} is {status}: only a finished run (done, failed or cancelled) can be evaluated; "
             f"wait for it to end or `amltui cancel {record['id']}` it first")
    return record


def interactive() -> bool:
    """Whether a question can be asked (stdin is a terminal)."""
    return sys.stdin.isatty()


def _announce_long(estimate: str) -> None:
    console.print(f"this evaluation is projected to take {estimate}", highlight=False, markup=False)


def _confirm_long(estimate: str) -> None:
    """Ask before a long evaluation; without a terminal to ask on, refuse (UserError) and say how to go on."""
    _announce_long(estimate)
    if not interactive():
        raise UserError(f"refusing to start an evaluation projected to take {estimate} without confirmation",
                        "pass --yes to run it anyway, or make it smaller (--subset, fewer --aa-eps values, "
                        "--set aa_version=standard-fast)")
    if not typer.confirm("start it?", default=False):
        raise UserError("evaluation not started (answered no)", code=1)


def _evaluate(store, record: dict, robust: RobustnessRequest, base: bool = True,
              confirm: Callable[[str], None] | None = None) -> dict:
    """The base metrics (unless only robustness was asked and they exist, or not ``base``), then what ``robust``
    asks for; ``confirm`` is asked before robustness measurements projected over 10 minutes."""
    asked = robust.autoattack or robust.curve or robust.checks or bool(robust.aa_eps)
    with RunProgress(console) as progress:
        try:
            if base and (not asked or not record.get("metrics")):
                record = evaluate_run(store, record["id"], device=robust.device, listener=progress.on_event)
            if asked:
                record = service.measure_robustness(store, record["id"], robust, progress.on_event, confirm)
        except UserError as exc:  # a long evaluation refused or declined: nothing was measured
            fail(str(exc), code=exc.code)
        except RunFailure as exc:
            fail(str(exc), code=1)
    return record


def print_robustness(record: dict, rd, *, curve: bool = False) -> None:
    """A_AA's breakdown, the curve (table and terminal plot) and the checks' summary with what tripped them."""

    from amltui.app.science.robustness import checkpoint_hash

    current = checkpoint_hash(rd.checkpoint) if (record.get("autoattack") or record.get("checks")) and \
        rd.checkpoint.exists() else None
    for key in ("autoattack", "checks"):
        measured = (record.get(key) or {}).get("checkpoint")
        if current and measured and measured != current:
            console.print(f"note: the {key} results below were measured on an earlier checkpoint of this run; "
                          "rerun `amltui eval` to refresh them", style="yellow", highlight=False)
    aa = record.get("autoattack")
    if aa:
        broken = ", ".join(f"{k} {v}" for k, v in (aa.get("broken_by") or {}).items())
        seconds = f"; {aa['seconds']:.1f} s" if aa.get("seconds") is not None else ""
        console.print(f"A_AA {aa['percent']:.2f}% ({markup_safe(describe_aa(aa))}): {aa['robust']} robust; "
                      f"clean-wrong {aa.get('clean_wrong')}; broken by {markup_safe(broken) or '–'}{seconds}",
                      highlight=False, soft_wrap=True)  # one line: the version's description is greppable
    if curve:
        data = read_curve(rd)
        if data:
            console.print(curve_table(data))
            for line in curve_chart(data, width=min(console.width, 90)):
                console.print(line)
            console.print(f"wrote {rd.path / 'curve.png'}", highlight=False)
    checks = record.get("checks")
    if checks:
        console.print(f"{markup_safe(checks['summary'].split(';')[0])} (n={checks['n']}, ε_s={checks['eps_s']:g})",
                      highlight=False)
        for r in checks["results"]:
            mark = {True: "[green]pass[/]", False: "[bold red]FAIL[/]", None: "[dim]n/a[/]"}[r["passed"]]
            console.print(f"  {mark} {markup_safe(r['label'])}: {markup_safe(r['message'])}", highlight=False)
    if record.get("flags"):
        console.print("flags: " + markup_safe(", ".join(record["flags"])), style="yellow", highlight=False)


def _print_human_sets(run_id: str, results: dict) -> None:
    table = Table(title=f"{run_id}: human-labelled invariance sets (Tramèr et al. 2020)", box=box.SIMPLE_HEAD,
                  caption="acc: % = human label; changed: human label ≠ original; follow/keep: % of those "
                  "predicted as the human / original label; same: human label = original, agree: % of those "
                  "predicted as it; >ε: examples past the L∞ ball (8-bit rounding)")
    table.add_column("set", no_wrap=True)
    for col in ("n", "acc", "changed", "follow", "keep", "same", "agree", ">ε"):
        table.add_column(col, justify="right")

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    for name, r in results["sets"].items():
        outside = "–" if r["max_excess"] is None else f"{r['outside_budget']} (+{r['max_excess']:.3f})"
        table.add_row(name, str(r["n"]), pct(r["acc_human"]),
                      str(r["n_changed"]) if results["have_originals"] else "–",
                      pct(r["follow_human"]), pct(r["keep_original"]),
                      str(r.get("n_unchanged", "–")) if results["have_originals"] else "–",
                      pct(r.get("agree_unchanged")), outside)
    console.print(table)
    if not results["have_originals"]:
        console.print("original MNIST test labels unavailable (the run is not on full MNIST): pass --mnist-dir to "
                      "split the examples into those whose human label changed (follow-human / keep-original) "
                      "and those whose did not (agree)")


def plot(
    run: Annotated[str | None, typer.Argument(metavar="RUN", help="Run id (or a unique prefix of it); not with "
                                              "--sweep.")] = None,
    pca: Annotated[bool, typer.Option("--pca/--no-pca", help="PCA of h(x), natural vs FGSM (Figure 1).")] = True,
    n: Annotated[int, typer.Option("-n", help="Test images to embed (stratified).")] = 2000,
    out: Annotated[Path | None, typer.Option(help="PNG path [default: <run>/pca.png].")] = None,
    device: Annotated[str | None, typer.Option(help="Device [default: the run's].")] = None,
    curve: Annotated[bool, typer.Option("--curve", help="Instead: the accuracy-vs-ε curve (curve.png and a terminal "
                                        "plot; computed as by `eval --curve` if missing).")] = False,
    sweep: Annotated[str | None, typer.Option(help="Instead: a sweep's frontier (--x vs --y, each grid point at "
                                              "its seed mean with error bars, the Pareto front).")] = None,
    x: o.MetricX = "A_PGD",
    y: o.MetricY = "A_IA",
    interval: Annotated[str, typer.Option(help="--sweep: error bars: std (±1 sample std) or ci95 (95% t-interval "
                                          "of the mean).")] = "std",
    mkdir: Annotated[bool, typer.Option("--mkdir", help="Create --out's folder if it does not exist (outside "
                                        "the current folder it is never made unasked).")] = False,
    runs_dir: o.RunsDir = None,
) -> None:
    """Write a run's figure: the 2-D PCA of h(x) for natural and FGSM-perturbed test images (or --curve, --sweep)."""
    if sweep or run is None:  # amltui/app/results/frontier.py

        store = open_store(runs_dir)
        with user_errors():
            if out is not None:
                check_output_path(out, store.runs_dir, mkdir=mkdir)
            points, path = service.sweep_frontier(all_records(store), store.runs_dir, sweep, x, y, interval, out)
        console.print(frontier_renderable(points, x, y, interval, width=min(console.width, 100)))
        return console.print(f"wrote {path}", highlight=False, markup=False)
    from amltui.app.results.png_figures import png_path
    from amltui.app.science.pca import write_pca

    if curve:
        return _plot_curve(runs_dir, run, device, out, mkdir)
    if not pca:
        fail("nothing to plot: choose --pca (the default) or --curve")
    store = open_store(runs_dir)
    record = resolve_run(store, run)
    if out is not None:
        with user_errors():
            out = check_output_path(png_path(out, f"{record['id']}-pca.png"), store.runs_dir, mkdir=mkdir)
    try:
        path = write_pca(store, record["id"], n=n, device=device, out=out)
    except RunFailure as exc:
        fail(str(exc), code=1)
    except OSError as exc:
        fail(f"cannot write the figure: {describe_os_error(exc)}")
    console.print(f"wrote {path}", highlight=False, markup=False)


def _plot_curve(runs_dir: Path | None, run: str, device: str | None, out: Path | None, mkdir: bool) -> None:
    """`plot --curve`: the accuracy-vs-ε curve, computed as by `eval --curve` when the run has none yet."""
    store = open_store(runs_dir)
    record = resolve_run(store, run)
    if out is not None:
        with user_errors():
            check_output_path(out, store.runs_dir, mkdir=mkdir)
    rd = run_dir(store.runs_dir, record["id"])
    data = read_curve(rd)
    if data is None:
        _evaluate(store, record, RobustnessRequest(curve=True, device=device), base=False)
        data = read_curve(rd)
    else:
        write_curve_png(data, out or rd.path / "curve.png", f"{record['id']}: {record.get('variant')}, seed "
                        f"{record.get('seed')}, {record.get('dataset')} (ε_s={data.get('eps_s')})")
    print_robustness({}, rd, curve=True)


def export(
    fmt: Annotated[o.Format, typer.Option("--format", "-f", help="Table format.")] = "md",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of printing.")] = None,
    where: o.Where = None,
    with_runs: Annotated[bool, typer.Option("--with-runs", help="List the run ids behind each row.")] = False,
    group_by: Annotated[str | None, typer.Option(help="Pool by these record/config keys, e.g. variant,dataset "
                                                 "[default: pool only runs equal in all but the seed].")] = None,
    sweep: Annotated[str | None, typer.Option(help="One sweep's table: a row per variant and grid point, sorted by "
                                              "the swept keys (`run --grid … --sweep NAME`).")] = None,
    mkdir: Annotated[bool, typer.Option("--mkdir", help="Create --out's folder if it does not exist (outside "
                                        "the current folder it is never made unasked).")] = False,
    runs_dir: o.RunsDir = None,
) -> None:
    """Results table: mean ± std (n) over seeds, paired differences against the baseline."""
    if out is not None and out.is_dir():
        fail(f"--out {out} is a folder; give a file path, e.g. {out / ('results.' + str(fmt))}")
    store = open_store(runs_dir)
    if out is not None:
        with user_errors():
            check_output_path(out, store.runs_dir, mkdir=mkdir)
    reap_lost(store)
    records = all_records(store)
    warn_unindexed(store, records)
    warn_damaged(records, " (left out of the table)")
    with user_errors():
        text, emptied = service.results_table(records, str(fmt), where=where, group_by=group_by,
                                              with_runs=with_runs, sweep=sweep, runs_dir=store.runs_dir)
    if emptied:
        err.print(emptied, highlight=False, markup=False)
    if not out:
        typer.echo(text, nl=False)
        return
    with user_errors(f"cannot write --out {out}: "):
        out.write_text(text, encoding="utf-8")  # its folder exists: check_output_path made it or refused
    console.print(f"wrote {out}", highlight=False, markup=False)
