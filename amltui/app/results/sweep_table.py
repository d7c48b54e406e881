"""A sweep's results: one row per (variant, grid point), pooled over seeds and paired with the baseline.

The pooling, the mean ± std (n) cells and the paired differences are amltui/app/results/report.py's (`aggregate`); this
module only labels each row by its grid point, marks the paper's own variants and sorts rows by the swept keys.
"""

from __future__ import annotations

from typing import Any

from amltui.app.results.report import Row, aggregate, render
from amltui.app.runs.records import field_of
from amltui.app.runs.sweeps import format_value
from core.config import VARIANTS, ConfigError, RunConfig
from core.metrics import METRIC_ORDER


def point_of(record: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The run's values of the swept keys (from its resolved config)."""
    return {k: field_of(record, k) for k in keys}


def point_label(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in point.items())


def is_paper_variant(record: dict[str, Any], keys: list[str]) -> bool:
    """The run's swept keys hold its variant's own values under its preset: the paper's variant, as defined."""
    variant, preset = record.get("variant"), record.get("preset")
    try:
        plain = RunConfig.resolve(str(variant), str(preset))
    except ConfigError:
        return False
    return all(field_of(record, k) == getattr(plain, k, None) for k in keys)


def _sort_value(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, int | float) else (1, 0.0, str(value))


def sweep_rows(records: list[dict[str, Any]], keys: list[str],
               metrics: tuple[str, ...] = METRIC_ORDER) -> list[Row]:
    """Rows of the sweep's finished runs, sorted by the swept keys then the variant; settings name the point."""
    rows = aggregate(records, metrics)
    for row in rows:
        first = row.runs[0]
        label = point_label(point_of(first, keys))
        row.setting = (label + (f" (paper's {row.variant})" if is_paper_variant(first, keys) else "")).strip() or "-"

    def order(row: Row) -> tuple:
        point = point_of(row.runs[0], keys)
        variant = VARIANTS.index(row.variant) if row.variant in VARIANTS else len(VARIANTS)
        return (*(_sort_value(point[k]) for k in keys), variant, row.dataset, row.setting)

    rows.sort(key=order)
    return rows


def sweep_table(records: list[dict[str, Any]], keys: list[str], fmt: str, name: str, *,
                with_runs: bool = False) -> str:
    """The sweep's table in md/csv/latex (report.py's renderers), headed by its name and axes in md."""
    text = render(sweep_rows(records, keys), fmt, with_runs=with_runs)
    if fmt == "md":
        axes = ", ".join(keys) or "none (one setting)"
        text = f"Sweep `{name}`: one row per variant and grid point, sorted by {axes}.\n\n" + text
    return text
