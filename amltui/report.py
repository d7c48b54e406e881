"""Results tables: seed aggregation (mean ± std with n), paired differences against the baseline, md/csv/latex.

Runs are pooled over seeds only when everything else is equal: dataset and its fingerprint, the config hash
(every scientific field but the seed) and the code version. Rows that would otherwise look alike say how they
differ in their "setting" column.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from amltui.flagnotes import MARK, MARKED_METRIC, flagged_runs, footnotes, selection_note
from core.config import VARIANTS
from core.metrics import METRIC_LABELS, METRIC_ORDER

FORMATS = ("md", "csv", "latex")


@dataclass
class Cell:
    values: list[float]
    run_ids: list[str] = field(default_factory=list)

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

    def text(self, signed: bool = False) -> str:
        if not self.values:
            return "–"
        mean = f"{self.mean:+.2f}" if signed else f"{self.mean:.2f}"
        std = "–" if self.std is None else f"{self.std:.2f}"
        return f"{mean} ± {std} (n={self.n})"


@dataclass
class Row:
    variant: str
    dataset: str
    setting: str
    runs: list[dict[str, Any]]
    cells: dict[str, Cell]
    deltas: dict[str, Cell] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(r["seed"] for r in self.runs)


def pool_key(record: dict[str, Any]) -> tuple:
    return (record.get("dataset"), record.get("fingerprint"), record.get("group"), record.get("code_version"))


def _setting(record: dict[str, Any]) -> str:
    diff = record.get("config_diff") or {}
    parts = [str(record.get("preset", "?"))] + [f"{k}={v}" for k, v in sorted(diff.items())]
    return "; ".join(parts)


def field_of(record: dict[str, Any], key: str) -> Any:
    """A record field, or a config value of the run (records carry their resolved config)."""
    if key in record:
        return record[key]
    return (record.get("config") or {}).get(key)


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
    for record in records:
        if record.get("status") == "done" and record.get("metrics"):
            key = pool_key(record) if not group_by else tuple(str(field_of(record, k)) for k in group_by)
            pools[key].append(record)
    rows = []
    for runs in pools.values():
        runs.sort(key=lambda r: (r["seed"], r["id"]))
        first = runs[0]
        cells = {m: Cell([r["metrics"][m] for r in runs if m in r["metrics"]],
                         [r["id"] for r in runs if m in r["metrics"]]) for m in metrics}
        if group_by:
            shown = [f"{k}={field_of(first, k)}" for k in group_by if k not in ("variant", "dataset")]
            diffs = _differences(runs)
            setting = "; ".join(shown + ([f"pools runs differing in: {', '.join(diffs)}"] if diffs else []))
            variant = str(field_of(first, "variant")) if "variant" in group_by else "(all)"
            dataset = str(field_of(first, "dataset")) if "dataset" in group_by else "(all)"
            rows.append(Row(variant, dataset, setting or "-", runs, cells))
        else:
            rows.append(Row(first["variant"], first["dataset"], _setting(first), runs, cells))
    if not group_by:
        _disambiguate(rows)
    rows.sort(key=lambda r: (r.dataset, r.setting, VARIANTS.index(r.variant) if r.variant in VARIANTS else 99))
    _pair_with_baselines(rows, metrics, group_by)
    return rows


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


def _pair_with_baselines(rows: list[Row], metrics: tuple[str, ...], group_by: list[str] | None = None) -> None:
    """Deltas against the baseline row of the same setting, over the seeds both have."""
    if group_by and "variant" not in group_by:
        return

    def context(row: Row) -> tuple:
        r = row.runs[0]
        if group_by:
            return tuple(str(field_of(r, k)) for k in group_by if k != "variant")
        return (r.get("dataset"), r.get("fingerprint"), r.get("context"), r.get("code_version"))

    baselines = {context(row): row for row in rows if row.variant == "baseline"}
    for row in rows:
        base = baselines.get(context(row))
        if base is None or base is row:
            continue
        by_seed = {b["seed"]: b for b in base.runs}
        for m in metrics:
            diffs, ids = [], []
            for run in row.runs:
                b = by_seed.get(run["seed"])
                if b is not None and m in run["metrics"] and m in b["metrics"]:
                    diffs.append(run["metrics"][m] - b["metrics"][m])
                    ids.append(f"{run['id']}−{b['id']}")
            row.deltas[m] = Cell(diffs, ids)


def present_metrics(rows: list[Row], metrics: tuple[str, ...] = METRIC_ORDER) -> list[str]:
    """Metric columns that at least one row has (A_IA columns only once invariance sets exist)."""
    return [m for m in metrics if any(row.cells[m].values for row in rows)]


def render(rows: list[Row], fmt: str, *, with_runs: bool = False) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return {"md": to_markdown, "csv": to_csv, "latex": to_latex}[fmt](rows, with_runs=with_runs)


def to_markdown(rows: list[Row], *, with_runs: bool = False) -> str:
    if not rows:
        return "No finished runs to report.\n"
    metrics = present_metrics(rows)
    head = ["Variant", "Dataset", "Setting", *(METRIC_LABELS[m] for m in metrics), "Seeds"]
    lines = [_md_row(head), _md_row(["---"] * len(head))]
    for row in rows:
        cells = [row.cells[m].text() + (f" {MARK}" if m == MARKED_METRIC and flagged_runs(row.runs) else "")
                 for m in metrics]
        lines.append(_md_row([row.variant, row.dataset, row.setting, *cells, ",".join(map(str, row.seeds))]))
    out = ["Accuracy (%) on the test split: mean ± sample std over seeds (n = seeds).", "", *lines]
    notes = footnotes(rows)
    selection = selection_note([r for row in rows for r in row.runs])
    if notes or selection:
        out += ["", *[f"{line}  " for line in notes], *([selection] if selection else [])]
    paired = [row for row in rows if row.deltas]
    if paired:
        out += ["", "Paired differences against the baseline of the same setting, over the seeds both have "
                    "(percentage points, mean ± std):", ""]
        head = ["Variant", "Dataset", "Setting", *(f"Δ{METRIC_LABELS[m]}" for m in metrics)]
        out += [_md_row(head), _md_row(["---"] * len(head))]
        for row in paired:
            out.append(_md_row([row.variant, row.dataset, row.setting,
                                *(row.deltas[m].text(signed=True) for m in metrics)]))
    if with_runs:
        out += ["", "Runs behind each row:", ""]
        for row in rows:
            out.append(f"- {row.variant} / {row.dataset} / {row.setting}: " + ", ".join(r["id"] for r in row.runs))
    return "\n".join(out) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def to_csv(rows: list[Row], *, with_runs: bool = False) -> str:
    metrics = present_metrics(rows) if rows else list(METRIC_ORDER)
    buf = io.StringIO()
    writer = csv.writer(buf)
    head = ["variant", "dataset", "setting", "seeds"]
    for m in metrics:
        head += [f"{m}_mean", f"{m}_std", f"{m}_n", f"delta_{m}_mean", f"delta_{m}_std", f"delta_{m}_n"]
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
        names = sorted({f for r in row.runs for f in r.get("flags") or []})
        line.append(" ".join(f"{f}:{sum(f in (r.get('flags') or []) for r in row.runs)}/{len(row.runs)}"
                             for f in names))
        if with_runs:
            line.append(" ".join(r["id"] for r in row.runs))
        writer.writerow(line)
    return buf.getvalue()


def to_latex(rows: list[Row], *, with_runs: bool = False) -> str:
    metrics = present_metrics(rows) if rows else []
    cols = "lll" + "c" * len(metrics)
    out = [f"\\begin{{tabular}}{{{cols}}}", "\\toprule",
           " & ".join(["Variant", "Dataset", "Setting", *(_tex(METRIC_LABELS[m]) for m in metrics)]) + " \\\\",
           "\\midrule"]
    for row in rows:
        cells = []
        for m in metrics:
            c = row.cells[m]
            if not c.values:
                cells.append("--")
            else:
                std = "--" if c.std is None else f"{c.std:.2f}"
                dagger = "$^\\dagger$" if m == MARKED_METRIC and flagged_runs(row.runs) else ""
                cells.append(f"${c.mean:.2f} \\pm {std}$ ({c.n}){dagger}")
        out.append(" & ".join([_tex(row.variant), _tex(row.dataset), _tex(row.setting), *cells]) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    out += [f"\\par{{\\footnotesize $^\\dagger$ {_tex(line.removeprefix(MARK + ' '))}}}" for line in footnotes(rows)]
    if with_runs:
        out += [f"% {row.variant} {row.dataset}: " + " ".join(r["id"] for r in row.runs) for row in rows]
    return "\n".join(out) + "\n"


def _tex(text: str) -> str:
    return (text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("&", "\\&")
            .replace("%", "\\%").replace("#", "\\#").replace("→", "$\\to$"))
