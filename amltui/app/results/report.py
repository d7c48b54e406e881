"""Results tables: seed aggregation (mean ± std with n), paired differences against the baseline, md/csv/latex.

Runs are pooled over seeds only when everything else is equal: dataset and its fingerprint, the config hash
(every scientific field but the seed) and the code version. Rows that would otherwise look alike say how they
differ in their "setting" column. A cell pools at most one run per (setting, seed): when a seed was run more
than once, the latest finished run counts and the others are listed as repeats.

Pairing (the one implementation behind export, report.md and the dashboard): a run is paired with the
*reference baseline* run of the same seed in the same setting — same data fingerprint, code version and every
config value except the variant and its loss weights — whose variant is ``baseline`` with the baseline's own loss
weights. An ablation of the baseline (other weights) is a row of its own, never the reference.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from amltui.app.results.flagnotes import MARK, marked, selection_note
from amltui.app.results.flagnotes import footnotes as flag_footnotes
from amltui.app.results.report_notes import aa_note, flagged_lines
from amltui.app.runs.records import Status, field_of
from amltui.app.runs.sweeps import format_value
from core.config import VARIANT_DEFAULTS, VARIANTS
from core.domains import TARGET_TABLE_NOTE
from core.metrics import METRIC_LABELS, METRIC_ORDER

FORMATS = ("md", "csv", "latex")
SE_NOTE = ("SE_bin: the binomial standard error of one run's accuracy p on its m test images, 100·√(p(1−p)/m) "
           "at the mean p (m as stated above; the fewest when runs differ): the test set's own sampling error, "
           "which averaging seeds scored on the same images does not reduce. ± is the spread over seeds.")
IA_METRICS = ("A_IA", "A_IA_target")
NO_BASELINE = "no baseline run of the same setting (same data, code and config but the variant's loss weights)"


@dataclass
class Cell:
    values: list[float]
    run_ids: list[str] = field(default_factory=list)
    images: list[int] = field(default_factory=list)  # test images each value was measured on

    @property
    def images_text(self) -> str:
        """The number of test images behind the values: "10000", or "1000–10000" when the runs differ."""
        known = sorted(set(self.images))
        if not known:
            return "?"
        return str(known[0]) if len(known) == 1 else f"{known[0]}–{known[-1]}"

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (None with a single seed: no spread is known)."""
        return statistics.stdev(self.values) if self.n > 1 else None

    @property
    def se_binom(self) -> float | None:
        """Binomial standard error (points) of an accuracy on the cell's test images: 100·√(p(1−p)/m) at the mean
        p, m the fewest images of its runs; None when the image count is unknown. It is the test set's sampling
        error, which averaging seeds does not shrink: every seed is scored on the same images."""
        if not self.values or not self.images or min(self.images) < 1:
            return None
        p = min(max(self.mean / 100.0, 0.0), 1.0)
        return 100.0 * math.sqrt(p * (1.0 - p) / min(self.images))

    def text(self, signed: bool = False, se: bool = False) -> str:
        """'98.00 ± 1.00 (n=3)'; with ``se`` the binomial standard error too: '98.00 ± 1.00 (n=3; SE_bin 0.44)'."""
        if not self.values:
            return "–"
        mean = f"{self.mean:+.2f}" if signed else f"{self.mean:.2f}"
        if signed and not self.std:  # a paired difference without spread says so, never "± 0.00"
            return f"{mean} (no spread measured, n={self.n})"
        se_text = f"; SE_bin {self.se_binom:.2f}" if se and self.se_binom is not None else ""
        if self.std is None:  # one seed: its value and n, no placeholder for a spread that was never measured
            return f"{mean} (n={self.n}{se_text})"
        return f"{mean} ± {self.std:.2f} (n={self.n}{se_text})"


@dataclass
class Row:
    variant: str
    dataset: str
    setting: str
    runs: list[dict[str, Any]]
    cells: dict[str, Cell]
    deltas: dict[str, Cell] = field(default_factory=dict)
    repeats: list[dict[str, Any]] = field(default_factory=list)  # older runs of a seed that a later run replaced
    pairing: str = ""  # why the row has no paired differences ("" when it has them or is a reference)

    @property
    def seeds(self) -> list[int]:
        return sorted(r["seed"] for r in self.runs)

    @property
    def ia_note(self) -> str | None:
        """The caveat on A_IA / A_IA→target: the digit target table applied to data that are not digits."""
        from core.domains import target_table_note

        notes = {target_table_note(str(r.get("dataset"))) for r in self.runs} - {None}
        return TARGET_TABLE_NOTE if notes else None

    def seeds_text(self) -> str:
        """Seeds, with repeated runs of a seed marked: "0,1,2 (seed 0 also ran as a-…; latest counts)"."""
        text = ",".join(map(str, self.seeds))
        if self.repeats:
            text += " (repeats not counted: " + ", ".join(f"s{r['seed']} {r['id']}" for r in self.repeats) + ")"
        return text


def pool_key(record: dict[str, Any]) -> tuple:
    return (record.get("dataset"), record.get("fingerprint"), record.get("group"), record.get("code_version"))


def _setting(record: dict[str, Any]) -> str:
    diff = record.get("config_diff") or {}
    # values as the sweep view and --set write them (lambda_sa=1, false, null), not as Python prints them
    parts = [str(record.get("preset", "?"))] + [f"{k}={'null' if v is None else format_value(v)}"
                                                for k, v in sorted(diff.items())]
    return "; ".join(parts)


def _differences(runs: list[dict[str, Any]]) -> list[str]:
    """What, besides the seed, differs between runs pooled into one row (for an explicit --group-by)."""
    diffs = []
    for key, label in (("fingerprint", "data fingerprint"), ("code_version", "code version")):
        if len({str(r.get(key)) for r in runs}) > 1:
            diffs.append(label)
    configs = [r.get("config") or {} for r in runs]
    keys = sorted({k for c in configs for k in c} - {"seed", "device", "threads", "data_dir", "eval_batch_size"})
    diffs += [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    return diffs


def aggregate(records: list[dict[str, Any]], metrics: tuple[str, ...] = METRIC_ORDER,
              group_by: list[str] | None = None) -> list[Row]:
    """One row per pool of finished runs; deltas against the matching baseline over shared seeds.

    By default runs are pooled only when they differ in nothing but the seed. ``group_by`` pools by the given
    record/config keys instead; a row that then mixes runs differing in anything else says so.
    """
    pools: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    finished = [r for r in records if r.get("status") == Status.DONE and r.get("metrics")]
    latest, repeats = latest_per_seed(finished)
    for record in latest:
        key = pool_key(record) if not group_by else tuple(str(field_of(record, k)) for k in group_by)
        pools[key].append(record)
    rows = []
    for runs in pools.values():
        runs.sort(key=lambda r: (r["seed"], r["id"]))
        first = runs[0]
        cells = {m: Cell([r["metrics"][m] for r in runs if m in r["metrics"]],
                         [r["id"] for r in runs if m in r["metrics"]],
                         [int((r.get("metrics_n") or {}).get(m, 0)) for r in runs if m in r["metrics"]])
                 for m in metrics}
        if group_by:
            shown = [f"{k}={field_of(first, k)}" for k in group_by if k not in ("variant", "dataset")]
            diffs = _differences(runs)
            setting = "; ".join(shown + ([f"pools runs differing in: {', '.join(diffs)}"] if diffs else []))
            variant = str(field_of(first, "variant")) if "variant" in group_by else "(all)"
            dataset = str(field_of(first, "dataset")) if "dataset" in group_by else "(all)"
            rows.append(Row(variant, dataset, setting or "-", runs, cells))
        else:
            rows.append(Row(first["variant"], first["dataset"], _setting(first), runs, cells))
        ids = {r["id"] for r in runs}
        rows[-1].repeats = [r for r in repeats if r["latest"] in ids]
    if not group_by:
        _disambiguate(rows)
    rows.sort(key=lambda r: (r.dataset, r.setting, VARIANTS.index(r.variant) if r.variant in VARIANTS else 99))
    _pair_with_baselines(rows, metrics, latest)
    return rows


def _finished_at(record: dict[str, Any]) -> tuple[str, str, str]:
    return (str(record.get("ended") or ""), str(record.get("created") or ""), record["id"])


def latest_per_seed(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One run per (setting, seed): the latest finished one. Returns (kept runs, repeats), where each repeat is
    ``{"id", "seed", "latest": id of the run that counts instead}``."""
    by_key: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_key[(*pool_key(record), record.get("seed"))].append(record)
    kept, repeats = [], []
    for same in by_key.values():
        same.sort(key=_finished_at)
        kept.append(same[-1])
        repeats += [{"id": r["id"], "seed": r.get("seed"), "latest": same[-1]["id"]} for r in same[:-1]]
    return kept, repeats


def is_reference_baseline(record: dict[str, Any]) -> bool:
    """A plain baseline run: variant ``baseline`` with the baseline's own loss weights (not an ablation)."""
    if record.get("variant") != "baseline":
        return False
    config = record.get("config") or {}
    diff = record.get("config_diff") or {}  # records without a resolved config: the preset's weights + overrides
    return all(config.get(k, diff.get(k, v)) == v for k, v in VARIANT_DEFAULTS["baseline"].items())


def _pair_key(record: dict[str, Any]) -> tuple:
    return (record.get("dataset"), record.get("fingerprint"), record.get("context"), record.get("code_version"))


def _disambiguate(rows: list[Row]) -> None:
    """Rows with equal (variant, dataset, setting) differ in data or code: say so instead of pooling them."""
    seen: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        seen[(row.variant, row.dataset, row.setting)].append(row)
    for same in seen.values():
        if len(same) < 2:
            continue
        for row in same:
            r = row.runs[0]
            row.setting += f"; data {str(r.get('fingerprint'))[:8]}; code {r.get('code_version')}"


def _pair_with_baselines(rows: list[Row], metrics: tuple[str, ...], runs: list[dict[str, Any]]) -> None:
    """Deltas of each run against the reference baseline run of its setting and seed (each seed once per row)."""
    references = {(*_pair_key(r), r.get("seed")): r for r in runs if is_reference_baseline(r)}
    for row in rows:
        if all(is_reference_baseline(r) for r in row.runs):
            continue  # the reference itself: nothing to subtract
        pairs, used = [], set()
        for run in row.runs:
            base = references.get((*_pair_key(run), run.get("seed")))
            if base is None or base is run or base["id"] in used:
                continue
            used.add(base["id"])
            pairs.append((run, base))
        if len({r.get("variant") for r in row.runs}) > 1:
            row.pairing = "the row pools several variants: no paired difference"
            continue
        if not pairs:
            row.pairing = NO_BASELINE
            continue
        for m in metrics:
            diffs, ids = [], []
            for run, base in pairs:
                if m in run["metrics"] and m in base["metrics"]:
                    diffs.append(run["metrics"][m] - base["metrics"][m])
                    ids.append(f"{run['id']}−{base['id']}")
            row.deltas[m] = Cell(diffs, ids)


def present_metrics(rows: list[Row], metrics: tuple[str, ...] = METRIC_ORDER) -> list[str]:
    """Metric columns that at least one row has (A_IA columns only once invariance sets exist)."""
    return [m for m in metrics if any(row.cells[m].values for row in rows)]


def render(rows: list[Row], fmt: str, *, with_runs: bool = False) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return {"md": to_markdown, "csv": to_csv, "latex": to_latex}[fmt](rows, with_runs=with_runs)


def images_per_metric(rows: list[Row], metrics: list[str]) -> dict[str, str]:
    """Test images behind each metric column over all rows ("10000", or "1000–10000" when rows differ)."""
    out = {}
    for m in metrics:
        merged = Cell([], images=[i for row in rows for i in row.cells[m].images])
        out[m] = merged.images_text
    return out


def footnotes(rows: list[Row], metrics: list[str]) -> list[str]:
    """What the numbers were measured on and with, as plain sentences under a table."""
    notes = []
    images = images_per_metric(rows, metrics)
    if len(set(images.values())) == 1:
        notes.append(f"Every column is measured on {next(iter(images.values()))} test images per run.")
    else:
        notes.append("Test images per run, by column: "
                     + ", ".join(f"{METRIC_LABELS[m]} {images[m]}" for m in metrics) + ".")
    pgd = pgd_text(rows)
    if pgd and "A_PGD" in metrics:
        notes.append(f"A_PGD: {pgd}.")
    if any(row.ia_note for row in rows) and any(m in IA_METRICS for m in metrics):
        notes.append(f"† A_IA and A_IA→target: {TARGET_TABLE_NOTE} (an invariance example there is not known "
                     "to change the true class).")
    if "A_AA" in metrics and (aa := aa_note([r for row in rows for r in row.runs])):
        notes.append(aa)
    agreement = agreement_text([r for row in rows for r in row.runs])
    if agreement:
        notes.append(agreement)
    return notes


def se_note(rows: list[Row], metrics: list[str]) -> list[str]:
    """The SE_bin sentence, when any cell shows one."""
    return [SE_NOTE] if any(row.cells[m].se_binom is not None for row in rows for m in metrics) else []


def pgd_text(rows: list[Row]) -> str:
    """The PGD attack(s) actually used by the runs, from their resolved configs: "PGD-40, α 0.01, ε 0.3"."""
    seen = []
    for row in rows:
        for r in row.runs:
            c = r.get("config") or {}
            if "pgd_steps" not in c:
                continue
            eps = c.get("pgd_eps") if c.get("pgd_eps") is not None else c.get("eps_s")
            text = f"PGD-{c['pgd_steps']} (L∞ ε {eps:g}, step α {c.get('pgd_alpha'):g}, random start)"
            if text not in seen:
                seen.append(text)
    return "; ".join(seen)


def agreement_text(runs: list[dict[str, Any]]) -> str:
    """The measured agreement of fast invariance sets with the exact search, when any run used one."""
    parts = {}
    for r in runs:
        for split, a in (r.get("inv_agreement") or {}).items():
            parts[(r.get("dataset"), split)] = (f"{r.get('dataset')} {split}: same neighbour as exact on "
                                                f"{100 * a['same_neighbour']:.1f}% of {a['sample']} sampled queries")
    if not parts:
        return ""
    return "Invariance sets from the fast search; " + "; ".join(parts[k] for k in sorted(parts, key=str)) + "."


def _ia_mark(row: Row, metric: str) -> str:
    return "†" if row.ia_note and metric in IA_METRICS else ""


@dataclass(frozen=True)
class Columns:
    """Which of the Dataset and Setting columns a table needs: only those its rows differ in. What all rows
    share is said once, in ``common`` (for the caption or the line above the table)."""

    dataset: bool
    setting: bool
    common: str

    def head(self) -> list[str]:
        return ["Variant", *(["Dataset"] if self.dataset else []), *(["Setting"] if self.setting else [])]

    def cells(self, row: Row) -> list[str]:
        return [row.variant, *([row.dataset] if self.dataset else []), *([row.setting] if self.setting else [])]


def columns_for(rows: list[Row]) -> Columns:
    datasets = sorted({row.dataset for row in rows})
    settings = sorted({row.setting for row in rows})
    shared = ([f"dataset {datasets[0]}"] if len(datasets) == 1 else []) + \
             ([f"setting {settings[0]}"] if len(settings) == 1 else [])
    common = f"All rows: {', '.join(shared)}." if shared else ""
    return Columns(len(datasets) > 1, len(settings) > 1, common)


def to_markdown(rows: list[Row], *, with_runs: bool = False) -> str:
    if not rows:
        return "No finished runs to report.\n"
    metrics = present_metrics(rows)
    cols = columns_for(rows)
    head = [*cols.head(), *(METRIC_LABELS[m] for m in metrics), "Seeds"]
    lines = [_md_row(head), _md_row(["---"] * len(head))]
    for row in rows:
        cells = [row.cells[m].text(se=True) + _ia_mark(row, m) + (f" {MARK}" if marked(row.runs, m) else "")
                 for m in metrics]
        lines.append(_md_row([*cols.cells(row), *cells, row.seeds_text()]))
    intro = "Accuracy (%) on the test split: mean ± sample std over seeds (n = seeds, one run per seed)."
    out = [" ".join(filter(None, [intro, cols.common])), "", *lines, "", *footnotes(rows, metrics),
           *se_note(rows, metrics)]
    notes = flag_footnotes(rows)
    selection = selection_note([r for row in rows for r in row.runs])
    if notes or selection:
        out += ["", *[f"{line}  " for line in notes], *([selection] if selection else [])]
    checked = flagged_lines([r for row in rows for r in row.runs])
    out += ["", "Sanity checks (Carlini et al. 2019; `amltui eval RUN --checks`):", "", *checked] if checked else []
    compared = [row for row in rows if row.deltas or row.pairing]
    if compared:
        cols = columns_for(compared)
        out += ["", "Paired differences against the reference baseline (variant `baseline` with its own loss "
                    "weights) of the same setting, seed by seed (percentage points, mean ± std)."
                + (f" {cols.common}" if cols.common else ""), ""]
        head = [*cols.head(), *(f"Δ{METRIC_LABELS[m]}" for m in metrics)]
        out += [_md_row(head), _md_row(["---"] * len(head))]
        for row in compared:
            if row.deltas:
                cells = [row.deltas[m].text(signed=True) + _ia_mark(row, m) for m in metrics]
            else:
                cells = [row.pairing] + [""] * (len(metrics) - 1)
            out.append(_md_row([*cols.cells(row), *cells]))
    if with_runs:
        out += ["", "Runs behind each row (the run each seed's cell used):", ""]
        for row in rows:
            used = ", ".join(f"s{r['seed']} {r['id']}" for r in row.runs)
            line = f"- {row.variant} / {row.dataset} / {row.setting}: {used}"
            if row.repeats:
                line += "; repeats not counted: " + ", ".join(
                    f"s{r['seed']} {r['id']} (superseded by {r['latest']})" for r in row.repeats)
            out.append(line)
    return "\n".join(out) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def to_csv(rows: list[Row], *, with_runs: bool = False) -> str:
    metrics = present_metrics(rows) if rows else list(METRIC_ORDER)
    buf = io.StringIO()
    writer = csv.writer(buf)
    head = ["variant", "dataset", "setting", "seeds"]
    for m in metrics:
        head += [f"{m}_mean", f"{m}_std", f"{m}_n", f"{m}_test_images", f"{m}_se_binom", f"delta_{m}_mean",
                 f"delta_{m}_std", f"delta_{m}_n"]
    head += ["pairing", "ia_note", "pgd", "autoattack", "repeats_not_counted"]
    head.append("flags")  # "gradient_masking:2/3" = 2 of the row's 3 runs flagged (core/flags.py)
    if with_runs:
        head.append("runs")
    writer.writerow(head)
    for row in rows:
        line: list[Any] = [row.variant, row.dataset, row.setting, " ".join(map(str, row.seeds))]
        for m in metrics:
            for cell in (row.cells[m], row.deltas.get(m)):
                if cell is None or not cell.values:
                    line += ["", "", 0]
                else:
                    line += [f"{cell.mean:.4f}", "" if cell.std is None else f"{cell.std:.4f}", cell.n]
                if cell is row.cells[m]:
                    se = cell.se_binom if cell.values else None
                    line += [cell.images_text if cell.values else "", "" if se is None else f"{se:.4f}"]
        line += [row.pairing, row.ia_note or "", pgd_text([row]), aa_note(row.runs).removeprefix("A_AA: "),
                 " ".join(r["id"] for r in row.repeats)]
        names = sorted({f for r in row.runs for f in r.get("flags") or []})
        line.append(" ".join(f"{f}:{sum(f in (r.get('flags') or []) for r in row.runs)}/{len(row.runs)}"
                             for f in names))
        if with_runs:
            line.append(" ".join(r["id"] for r in row.runs))
        writer.writerow(line)
    return buf.getvalue()


LATEX_NOTE = "% Needs \\usepackage{booktabs} in the preamble (\\toprule, \\midrule, \\bottomrule)."
LATEX_SINGLE = "a value without $\\pm$ is a single run (n=1): no spread measured"
LATEX_EQUAL = "a value without $\\pm$ has no spread measured (n=1, or the same difference on every seed)"


def _tex_cell(cell: Cell, signed: bool = False) -> str:
    """The mean, then '± std (seeds)' and the binomial SE on small lines below it, so that a row of six metrics
    fits a page's width: '$98.00$' / '±1.00 (3)' / 'SE 0.44'. A single run (or equal paired differences) has no
    spread line: '$91.00$ (1)' / 'SE 0.90'."""
    if not cell.values:
        return "--"
    mean = f"{cell.mean:+.2f}" if signed else f"{cell.mean:.2f}"
    spread = cell.std if cell.std or (cell.std is not None and not signed) else None
    se = cell.se_binom if not signed else None
    lines = ([f"${mean}$ ({cell.n})"] if spread is None
             else [f"${mean}$", f"{{\\scriptsize $\\pm {spread:.2f}$ ({cell.n})}}"])
    if se is not None:
        lines.append(f"{{\\scriptsize SE {se:.2f}}}")
    return lines[0] if len(lines) == 1 else _tex_stack(*lines)


def _tex_stack(*lines: str, align: str = "t") -> str:
    """Lines in one cell (a nested tabular: no package needed)."""
    body = "\\\\".join(lines)
    return f"\\begin{{tabular}}[{align}]{{@{{}}c@{{}}}}{body}\\end{{tabular}}"


def _tex_head(label: str) -> str:
    """A metric label as a column head; a long one ('A_IA→target') is set on two lines."""
    top, arrow, rest = label.partition("→")
    return _tex_stack(_tex(top + arrow), _tex(rest), align="b") if rest else _tex(label)


def _latex_table(caption: str, label: str, head: list[str], body: list[list[str]], after: list[str],
                 text_columns: int) -> list[str]:
    r"""A booktabs table environment: the text columns, then centred value columns, then rendered notes.

    The tabular is set in \small with narrower column gaps (local to the float) so that a one-setting table fits
    the \textwidth of a standard article (tests/app/test_report_latex.py measures it with pdflatex)."""
    notes = ["\\par\\medskip", "\\begin{minipage}{\\linewidth}\\footnotesize\\raggedright",
             *(f"{note}\\par" for note in after), "\\end{minipage}"] if after else []
    return ["\\begin{table}[t]", "\\centering", "\\small", "\\setlength{\\tabcolsep}{4pt}",
            f"\\caption{{{caption}}}", f"\\label{{tab:{label}}}",
            f"\\begin{{tabular}}{{{'l' * text_columns}{'c' * (len(head) - text_columns)}}}", "\\toprule",
            " & ".join(head) + " \\\\", "\\midrule", *(" & ".join(cells) + " \\\\" for cells in body), "\\bottomrule",
            "\\end{tabular}", *notes, "\\end{table}"]


def _latex_cells(row: Row, metrics: list[str], cols: Columns) -> list[str]:
    cells = []
    for m in metrics:
        flag = "$^\\ddagger$" if row.cells[m].values and marked(row.runs, m) else ""
        ia = "$^\\dagger$" if row.cells[m].values and _ia_mark(row, m) else ""
        cells.append(_tex_cell(row.cells[m]) + ia + flag)
    return [*map(_tex, cols.cells(row)), *cells]


def _latex_paired(rows: list[Row], metrics: list[str]) -> list[str]:
    """The paired-differences table (as in the md report), or nothing when no row is compared."""
    compared = [row for row in rows if row.deltas or row.pairing]
    if not compared:
        return []
    cols = columns_for(compared)
    body = [[*map(_tex, cols.cells(row)),
             *([_tex_cell(row.deltas[m], signed=True) + ("$^\\dagger$" if _ia_mark(row, m) else "")
                for m in metrics] if row.deltas else [_tex(row.pairing)] + [""] * (len(metrics) - 1))]
            for row in compared]
    single = any(not row.deltas[m].std for row in compared if row.deltas for m in metrics if row.deltas[m].values)
    caption = ("Paired differences against the reference baseline (variant baseline with its own loss weights) of "
               "the same setting, seed by seed: percentage points, mean $\\pm$ sample std (seeds)"
               + (f"; {LATEX_EQUAL}" if single else "") + "." + (f" {_tex(cols.common)}" if cols.common else ""))
    head = [*cols.head(), *(_tex_head(f"Δ{METRIC_LABELS[m]}") for m in metrics)]
    marks = [IA_NOTE_TEX] if any(_ia_mark(row, m) for row in compared if row.deltas for m in metrics) else []
    return ["", *_latex_table(caption, "amltui-paired", head, body, marks, len(cols.head()))]


IA_NOTE_TEX = "$^\\dagger$ See the note on A\\_IA under Table~\\ref{tab:amltui-results}."


def to_latex(rows: list[Row], *, with_runs: bool = False) -> str:
    """The results table (and the paired differences, when any) as booktabs LaTeX tables, caption and label.

    Every note (the marks †, ‡, the images and attacks behind the numbers) is rendered under the table, not left
    in % comments; columns that every row shares are said once in the caption."""
    metrics = present_metrics(rows) if rows else []
    cols = columns_for(rows)
    images = images_per_metric(rows, metrics)
    differ = len(set(images.values())) > 1
    head = [*cols.head(), *(_tex_head(METRIC_LABELS[m]) + (f" ($n_{{img}}={images[m]}$)" if differ else "")
                            for m in metrics)]
    single = any(row.cells[m].n == 1 for row in rows for m in metrics)
    se = any(row.cells[m].se_binom is not None for row in rows for m in metrics)
    caption = ("Accuracy (\\%) on the test split: mean $\\pm$ sample std over seeds (seeds in parentheses, one run "
               "per seed" + ("; SE below it: the binomial standard error $100\\sqrt{p(1-p)/m}$ of an accuracy $p$ "
                             "on $m$ test images, which averaging seeds does not reduce" if se else "") + ")"
               + (f"; {LATEX_SINGLE}" if single else "") + "." + (f" {_tex(cols.common)}" if cols.common else ""))
    if "A_AA" in metrics and (aa := aa_note([r for row in rows for r in row.runs])):  # in the PDF, not a comment
        caption += " " + _tex(aa)
    notes = [_tex(note) for note in (footnotes(rows, metrics) + se_note(rows, metrics) if rows else [])]
    notes += [f"$^\\ddagger$ {_tex(line.removeprefix(MARK + ' '))}" for line in flag_footnotes(rows)]
    selection = selection_note([r for row in rows for r in row.runs])
    notes += [_tex(selection)] if selection else []
    body = [_latex_cells(r, metrics, cols) for r in rows]
    out = [LATEX_NOTE, *_latex_table(caption, "amltui-results", head, body, notes, len(cols.head()))]
    out += _latex_paired(rows, metrics)
    if with_runs:
        out += [f"% {row.variant} {row.dataset}: " + " ".join(r["id"] for r in row.runs)
                + (" (repeats not counted: " + " ".join(r["id"] for r in row.repeats) + ")" if row.repeats else "")
                for row in rows]
    return "\n".join(out) + "\n"


# Characters that pdflatex (utf8 input, no extra packages) cannot set in text, as LaTeX.
_TEX_CHARS = {
    "\\": "\\textbackslash{}", "_": "\\_", "&": "\\&", "%": "\\%", "#": "\\#", "$": "\\$", "{": "\\{", "}": "\\}",
    "~": "\\textasciitilde{}", "^": "\\textasciicircum{}", "→": "$\\to$", "ε": "$\\varepsilon$",
    "α": "$\\alpha$", "λ": "$\\lambda$", "Δ": "$\\Delta$", "∞": "$\\infty$", "≈": "$\\approx$", "≤": "$\\le$",
    "≥": "$\\ge$", "±": "$\\pm$", "×": "$\\times$", "·": "$\\cdot$", "−": "$-$", "—": "---", "–": "--",
    "…": "\\dots{}", "†": "$^\\dagger$", "‡": "$^\\ddagger$", "⚠": "(!)", "≠": "$\\neq$", "∈": "$\\in$",
    "√": "$\\surd$", "⊘": "$\\oslash$", "σ": "$\\sigma$", "²": "$^2$", "³": "$^3$",
}


def _tex(text: str) -> str:
    """Plain text as LaTeX text: specials escaped, the non-ASCII symbols amltui writes as math."""
    return "".join(_TEX_CHARS.get(ch, ch) for ch in text)


# Two-sided 95% Student-t quantiles by degrees of freedom (for paired differences over few seeds).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042}


def t_quantile(df: int) -> float:
    keys = sorted(T975)
    return T975[max(k for k in keys if k <= df)] if df >= 1 else math.nan
