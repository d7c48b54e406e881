"""`amltui reproduce`: the paper's Table 1 and Figure 1 from one command, with an honest report.

Plan → (reuse finished runs, resume interrupted ones, queue the rest) → invariance sets → runs → report folder.
Rerunning is cheap: finished runs and cached invariance sets are reused; only what is missing is done.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import math
import platform
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from amltui.app.results import human_agreement, paper
from amltui.app.results.curves import robustness_figure
from amltui.app.results.flagnotes import footnotes as flag_footnotes
from amltui.app.results.flagnotes import marked, selection_note
from amltui.app.results.frontier import frontier_png
from amltui.app.results.report import (
    Row,
    aggregate,
    columns_for,
    footnotes,
    pgd_text,
    present_metrics,
    render,
    se_note,
    t_quantile,
)
from amltui.app.results.report_notes import aa_note, flagged_lines
from amltui.app.runs.folders import code_version, run_dir
from amltui.app.runs.records import RESUMABLE, STATUSES, Status, inspect_all
from amltui.app.runs.store import Store
from core.config import VARIANTS, RunConfig
from core.domains import is_digit_dataset

USABLE = frozenset(STATUSES)  # every status but damaged



@dataclass
class Plan:
    reuse: list[str] = field(default_factory=list)  # done: nothing to do
    resume: list[str] = field(default_factory=list)  # failed / cancelled: continue from the checkpoint
    wait: list[str] = field(default_factory=list)  # queued / running elsewhere
    create: list[RunConfig] = field(default_factory=list)

    @property
    def run_ids(self) -> list[str]:
        return self.reuse + self.resume + self.wait


def plan(store: Store, configs: list[RunConfig]) -> Plan:
    """Match each wanted config to an existing run with the same config hash and seed (newest first)."""
    result = Plan()
    # Damaged runs (amltui.app.runs.records) are never reused: their config gets a fresh run.
    records = sorted(inspect_all(store.all(), store.runs_dir), key=lambda r: str(r.get("created") or ""),
                     reverse=True)
    for config in configs:
        key = (config.group_key(), config.seed)
        match = next((r for r in records if (r.get("group"), r.get("seed")) == key
                      and r.get("status") in USABLE), None)
        if match is None:
            result.create.append(config)
        elif match["status"] == Status.DONE:
            result.reuse.append(match["id"])
        elif match["status"] in RESUMABLE:
            result.resume.append(match["id"])
        else:
            result.wait.append(match["id"])
    return result


NAME_MAX = 150  # a report folder name longer than this keeps its head and gets a hash of the whole


def report_folder_name(configs: list[RunConfig]) -> str:
    """The default report folder of a reproduce: named by everything that tells it apart from another one —
    dataset, preset, each config value that differs from the preset (epochs, subsets, …), the seeds and the
    variants — so reproduces at different sizes never overwrite each other's report."""
    first = configs[0]
    diffs: dict[str, set[str]] = {}
    for config in configs:
        for key, value in config.diff_from_preset().items():
            diffs.setdefault(key, set()).add(_name_value(value))
    parts = ["reproduce", first.dataset, first.preset]
    parts += [f"{key}{'.'.join(sorted(values))}" for key, values in sorted(diffs.items())]
    seeds = sorted({c.seed for c in configs})
    parts.append("seeds" + (f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1))
                            and len(seeds) > 1 else ".".join(map(str, seeds))))
    variants = [v for v in VARIANTS if any(c.variant == v for c in configs)]
    if variants != list(VARIANTS):
        parts.append("variants_" + ".".join(variants))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts))
    if len(name) > NAME_MAX:
        name = name[:NAME_MAX - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def _name_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def reading(row: Row, metric: str) -> str:
    """A plain statement about a paired difference against the baseline."""
    cell = row.deltas.get(metric)
    if cell is None or cell.n == 0:
        return row.pairing or "no paired baseline runs"
    if cell.n < 2:
        return f"{cell.mean:+.2f} pp from a single seed: no spread measured (n=1), no conclusion"
    if not cell.std:
        return f"{cell.mean:+.2f} pp on every seed: no spread measured (n={cell.n}), no interval"
    half = t_quantile(cell.n - 1) * (cell.std or 0.0) / math.sqrt(cell.n)
    lo, hi = cell.mean - half, cell.mean + half
    verdict = ("within the seed-to-seed spread (the 95% interval includes 0)" if lo <= 0 <= hi
               else "outside the seed-to-seed spread (the 95% interval excludes 0)")
    return f"{cell.mean:+.2f} pp, 95% CI [{lo:+.2f}, {hi:+.2f}] over n={cell.n} paired seeds: {verdict}"


def _torch_build() -> str:
    """torch's ``__version__`` as torch itself sets it, CUDA tag included ('2.14.1+cu130'; the package metadata
    may say '2.14.1'), read from the installed torch/version.py without importing torch."""
    dist = metadata.distribution("torch")
    try:
        tree = ast.parse(Path(str(dist.locate_file("torch/version.py"))).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return dist.version
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0] if isinstance(node, ast.Assign) \
            else None
        if isinstance(target, ast.Name) and target.id == "__version__" and isinstance(node.value, ast.Constant):
            return str(node.value.value)
    return dist.version


def _versions() -> dict[str, str]:
    """The installed versions (from the package metadata: the torch build's local tag, e.g. ``+cu128``, included;
    nothing is imported, so writing a report never loads torch)."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist) if dist != "torch" else _torch_build()
        except metadata.PackageNotFoundError:
            return "?"

    return {"python": platform.python_version(), **{d: version(d) for d in ("torch", "numpy", "typer", "tinydb",
                                                                              "textual")},
            "amltui": code_version(), "platform": platform.platform()}


# Draws a run's pca.png from its model (amltui/app/science/pca.py write_pca): the caller passes it in, as a model
# is the science's to load; without it the report uses the pca.png a run already has.
DrawPca = Callable[[Store, str], object]


def write_report(store: Store, run_ids: list[str], out: Path, command: str, *, draw_pca: DrawPca | None = None) -> Path:
    """report.md, figures, configs and provenance for the given runs, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    records = [r for r in (store.get(i) for i in run_ids) if r is not None]
    done = [r for r in records if r.get("status") == Status.DONE]
    rows = aggregate(done)
    lines = [*_header(records, done, command), *_table1(rows, done), *_paper_rows(), *_further_metrics(rows, done),
             *_sanity(done), *_paired(rows), "", "## Figures", ""]
    lines += _figures(store, done, out, draw_pca) or ["No figures (no finished runs)."]
    lines += _provenance(records)
    _write_files(store, records, rows, out)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _header(records: list[dict[str, Any]], done: list[dict[str, Any]], command: str) -> list[str]:
    lines = [f"# Reproduction of Table 1 and Figure 1 — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "",
             f"Command: `{command}`", "",
             f"Runs: {len(done)} finished of {len(records)} ({', '.join(r['id'] for r in records)}).", ""]
    unfinished = [r for r in records if r.get("status") != Status.DONE]
    if unfinished:
        lines += ["**Unfinished runs (not in the tables):** "
                  + "; ".join(f"{r['id']} {r['status']} {r.get('error') or ''}".strip() for r in unfinished), ""]
    return lines


def _table1(rows: list[Row], done: list[dict[str, Any]]) -> list[str]:
    cols = columns_for(rows)
    lines = ["## Table 1", "", "Test accuracy (%), mean ± sample std over seeds (n = seeds, one run per seed; "
             "SE_bin = binomial standard error on the test images, see the notes)."
             + (f" {cols.common}" if cols.common else ""), ""]
    head = [*cols.head(), "A_orig", "A_SA", "A_IA", "Seeds"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        mark = "†" if row.ia_note else ""
        flag = {m: " ⚠" if marked(row.runs, m) else "" for m in ("A_orig", "A_SA")}
        lines.append(f"| {' | '.join(cols.cells(row))} | {row.cells['A_orig'].text(se=True)}{flag['A_orig']} | "
                     f"{row.cells['A_SA'].text(se=True)}{flag['A_SA']} | {row.cells['A_IA'].text(se=True)}{mark} | "
                     f"{row.seeds_text()} |")
    metrics = present_metrics(rows) if rows else []
    lines += ["", *footnotes(rows, metrics), *se_note(rows, metrics)] if rows else []
    return lines + _flag_section(rows, done)


def _paper_rows() -> list[str]:
    lines = ["", "### The paper's rows (reference points, another setting)", "",
             "| Variant | paper Table 1 = single run (run 3 of the authors' logs) | mean of the authors' 3 logged "
             "runs |", "|---|---|---|"]
    for variant in VARIANTS:
        lines.append(f"| {variant} | {paper.triple_text(paper.PAPER_SINGLE_RUN.get(variant))} | "
                     f"{paper.triple_text(paper.AUTHORS_THREE_RUN_MEAN.get(variant))} |")
    return lines + ["", f"A_orig / A_SA / A_IA. {paper.NOTE} Source: {paper.SOURCE}.", ""]


def _further_metrics(rows: list[Row], done: list[dict[str, Any]]) -> list[str]:
    lines = ["## Further metrics", "", f"A_PGD: {_pgd_of(done) or 'PGD'} (a check against gradient masking: an "
             "FGSM-trained model far weaker under PGD than under FGSM is masking gradients). A_IA→target: the share "
             "of invariance examples classified as the attack's target (Tramèr et al.'s reading: a good invariance "
             "example changes the true label, so following it is not an error). Human agreement is scored only for "
             "models trained on MNIST digits (the human-labelled sets are MNIST digits): the % of Tramèr et al.'s "
             "examples predicted as the human label, over all of them, then over those whose human label differs "
             "from the original (agreeing there is sensitivity) and those whose does not (agreeing there is "
             "invariance), so that a higher overall number can be traced to either side.", ""]
    aa = aa_note(done)  # the version, its iterations, ε and n of the runs that have A_AA
    how = ("measured by `reproduce` on a stratified test subset for every run that lacks it (`--robust-subset`, "
           "`--no-autoattack`), or by `amltui eval RUN --autoattack`")
    lines += [f"{aa.removesuffix('.')}; {how}." if aa else f"A_AA: AutoAttack (Croce & Hein 2020, via "
              f"torchattacks) at ε_s, {how}; test images per run: {_aa_images(done)}.", ""]
    lines += ["| Variant | Dataset | A_PGD | A_AA | A_IA→target | human agreement % (L∞ ε=0.3 set: all; human label "
              "changed; unchanged) |",
              "|---|---|---|---|---|---|"]
    for row in rows:
        mark = "†" if row.ia_note else ""
        failed = " ⚠" if any(f.startswith("check_") for r in row.runs for f in r.get("flags") or []) else ""
        lines.append(f"| {row.variant} | {row.dataset} | {row.cells['A_PGD'].text(se=True)}{failed} | "
                     f"{row.cells['A_AA'].text(se=True) if 'A_AA' in row.cells else '–'} | "
                     f"{row.cells['A_IA_target'].text()}{mark} | {_human_text(row)} |")
    if any(f.startswith("check_") for r in done for f in r.get("flags") or []):
        lines += ["", "⚠ on A_PGD: a sanity check failed for some of the row's runs (see Sanity checks): the attacks "
                  "did not find adversarial examples that exist, so A_PGD is not evidence of robustness there."]
    return lines


def _aa_images(done: list[dict[str, Any]]) -> str:
    counts = sorted({int(n) for r in done if (n := (r.get("metrics_n") or {}).get("A_AA")) is not None})
    if not counts:
        return "none measured"
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _human_text(row: Row) -> str:
    if not is_digit_dataset(row.dataset):
        return "not applicable (not MNIST digits)"
    return human_agreement.runs_text(row.runs)


def _sanity(done: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Sanity checks", "", "Carlini et al. 2019, all at ε_s: (a) PGD accuracy at ε=0.5 near 0, (b) more "
             "PGD steps / restarts neither lower accuracy (PGD had not converged) nor raise it (an attack bug), (c) "
             "black-box Square not stronger than white-box, (d) FGSM not far above PGD, (e) accuracy monotone in ε. "
             "`reproduce` runs (a), (c) and (d) on every run by default (`--robust-subset` stratified test images, "
             "cached; `--no-robust-checks` skips them): they catch a model that masks PGD as well as FGSM, which "
             "the gradient-masking flag cannot see. `amltui eval RUN --checks` runs all of them. A failed check "
             "flags the run (⚠ in the tables).", ""]
    return lines + (flagged_lines(done) or ["No run has been checked."])


def _paired(rows: list[Row]) -> list[str]:
    lines = ["", "## Paired differences against the baseline", ""]
    lines += ["Each variant run minus the reference baseline run (variant `baseline`, its own loss weights) of the "
              "same setting and seed; intervals are over amltui's own paired seeds only.", ""]
    paired = [row for row in rows if row.deltas]
    if not paired:
        lines.append("No variant has paired baseline runs.")
    for row in paired:
        for metric in ("A_orig", "A_SA", "A_IA", "A_PGD"):
            if row.deltas.get(metric) is not None and row.deltas[metric].n:
                mark = " (†)" if row.ia_note and metric == "A_IA" else ""
                lines.append(f"- {row.variant} − baseline, {metric}{mark}: {reading(row, metric)}.")
    lines += [f"- {row.variant} ({row.setting}): {row.pairing}." for row in rows if row.pairing]
    return lines


def _provenance(records: list[dict[str, Any]]) -> list[str]:
    fingerprints = sorted({f"{r['dataset']}: {r.get('fingerprint')}" for r in records})
    return ["", "## Provenance", "", f"- dataset fingerprints: {', '.join(fingerprints)}",
            *(f"- {k}: {v}" for k, v in _versions().items()),
            "- resolved configs: `configs/<run-id>.json`; full tables: `results.md`, `results.csv`", ""]


def _write_files(store: Store, records: list[dict[str, Any]], rows: list[Row], out: Path) -> None:
    """The report's companions: each run's resolved config, the full tables and the raw records."""
    configs = out / "configs"
    configs.mkdir(exist_ok=True)
    for r in records:
        src = run_dir(store.runs_dir, r["id"]).config_file
        if src.exists():
            shutil.copyfile(src, configs / f"{r['id']}.json")
    (out / "results.md").write_text(render(rows, "md", with_runs=True), encoding="utf-8")
    (out / "results.csv").write_text(render(rows, "csv", with_runs=True), encoding="utf-8")
    (out / "runs.json").write_text(json.dumps(records, indent=1), encoding="utf-8")


def _pgd_of(runs: list[dict[str, Any]]) -> str:
    return pgd_text([Row("", "", "", runs, {})])


def _flag_section(rows: list[Row], done: list[dict[str, Any]]) -> list[str]:
    """Warnings under Table 1: flagged rows (⚠ on their A_SA) and the rule that chose each model's epoch."""
    notes = flag_footnotes(rows)
    lines = [""]
    if notes:
        lines += [f"**Flags** (a cell marked {notes[0][0]} is not to be taken at face value: see core/flags.py):", "",
                  *(f"- {line}" for line in notes)]
    else:
        lines.append("No run is flagged (gradient masking: final A_SA − A_PGD or a one-epoch collapse of the "
                     "monitor's PGD accuracy; rule and thresholds in each run's config).")
    lines += ["", selection_note(done) or "Model selection: every run is evaluated with its last epoch's weights "
              "(select=last)."]
    return lines


def _figures(store: Store, done: list[dict[str, Any]], out: Path, draw_pca: DrawPca | None) -> list[str]:
    """The report's figure lines (an image each, or why one could not be drawn)."""
    from amltui.app.results.png_figures import curves_figure  # imports matplotlib: only when a report is written
    from core.errors import TrainingFailed

    names, missing = [], []
    series: dict[str, list[list[dict[str, Any]]]] = {}
    for variant in VARIANTS:
        runs = sorted((r for r in done if r["variant"] == variant), key=lambda r: r["seed"])
        if not runs:
            continue
        series[variant] = [[m for m in run_dir(store.runs_dir, r["id"]).read_metrics() if m.get("kind") == "epoch"]
                           for r in runs]
        first = runs[0]  # Figure 1 shows one model per variant: the lowest seed
        name = f"pca-{variant}.png"
        cached = run_dir(store.runs_dir, first["id"]).path / "pca.png"
        try:
            if not cached.exists():
                if draw_pca is None:
                    raise FileNotFoundError(f"run {first['id']} has no pca.png yet (`amltui plot {first['id']}` "
                                            "draws it)")
                draw_pca(store, first["id"])
            shutil.copyfile(cached, out / name)
        except (TrainingFailed, OSError, ValueError) as exc:  # a damaged checkpoint costs this figure, not the report
            missing.append(f"{name} not drawn: {exc}")
            continue
        names.append(name)
    if series:
        curves_figure(series, out / "curves.png")
        names.append("curves.png")
    if robustness_figure(store, done, out / "robustness.png"):
        names.append("robustness.png")

    if frontier_png(done, out / "frontier.png", keys=[], title="Sensitivity–invariance frontier"):
        names.append("frontier.png")
    return [f"![{name}]({name})" for name in names] + [f"- {line}" for line in missing]
