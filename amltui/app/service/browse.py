"""What the dashboard reads and repairs outside a single run: the results by setting, the sweeps, the index rebuild.

The screens call these instead of the store, the record checks and the report directly, so that a change to how
the index is read or repaired is made here once, for `amltui store rebuild` and the dashboard alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amltui.app.results.report import Row, _pair_key, aggregate, is_reference_baseline
from amltui.app.runs.records import inspect_all
from amltui.app.runs.store import RebuildReport, Store
from amltui.app.runs.sweeps import next_sweep


def rebuild_index(runs_dir: Path) -> RebuildReport:
    """The index recreated from the run folders (runs/*/run.json); a corrupt index is kept aside (store.py)."""
    return Store(runs_dir).rebuild()


def checked_records(runs_dir: Path) -> list[dict[str, Any]]:
    """Every indexed run, checked: a damaged record (a NaN or mistyped metric) is marked so, never averaged in."""
    return inspect_all(Store(runs_dir).all())


def results_by_setting(records: list[dict[str, Any]]) -> list[Row]:
    """The results table's rows: mean ± std per setting, the reference baseline of each setting first."""
    return baseline_first(aggregate(records))


def following_sweep(runs_dir: Path, current: str | None) -> str | None:
    """The sweep after ``current`` in the dashboard's cycle (all results → each sweep → all results)."""
    return next_sweep(Store(runs_dir).all(), runs_dir, current)


def baseline_first(rows: list[Row]) -> list[Row]:
    """Rows in aggregate's order, but each reference baseline moved up to just before the first row paired with
    it: an ablation's setting (a λ sweep's ``lambda_sa=0.25``) differs from its baseline's and may sort first."""
    baselines = [row for row in rows if row.runs and all(is_reference_baseline(r) for r in row.runs)]
    key_of = {id(row): {_pair_key(r) for r in row.runs} for row in baselines}
    ordered: list[Row] = []
    placed: set[int] = set()
    for row in rows:
        if id(row) in placed:
            continue
        if id(row) not in key_of:
            keys = {_pair_key(r) for r in row.runs}
            for base in baselines:
                if id(base) not in placed and key_of[id(base)] & keys:
                    ordered.append(base)
                    placed.add(id(base))
        ordered.append(row)
        placed.add(id(row))
    return ordered
