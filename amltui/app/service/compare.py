"""`amltui diff RUN RUN…`: what sets runs apart — record facts, config and final metrics side by side.

Values are shown verbatim (strings as stored, everything else as JSON), so two values that print alike are
alike; a key a run lacks is ``ABSENT``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from amltui.app.errors import UserError
from amltui.app.fsutil import read_json
from amltui.app.runs.folders import run_dir
from amltui.app.runs.store import Store

Record = dict[str, Any]
ABSENT = "(absent)"
# Facts of the record worth comparing (ids, timestamps, pids and hosts always differ and say nothing).
RECORD_FIELDS = ("variant", "seed", "dataset", "preset", "status", "epoch", "sweep", "tags", "note", "error",
                 "fingerprint", "code_version", "selected_epoch")


@dataclass
class DiffRow:
    section: str  # "run", "config" or "metrics"
    key: str
    values: list[str]  # one per run, verbatim

    @property
    def differs(self) -> bool:
        return len(set(self.values)) > 1


def verbatim(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def run_config(store: Store, record: Record) -> dict[str, Any]:
    """The run's config.json as written (the record's copy when the file cannot be read)."""
    try:
        data = read_json(run_dir(store.runs_dir, record["id"]).config_file)
    except (OSError, ValueError):
        data = None
    return data if isinstance(data, dict) else dict(record.get("config") or {})


def diff_runs(store: Store, runs: list[Record], *, everything: bool = False) -> list[DiffRow]:
    """A row per compared key, in the order run facts, config, metrics; only the rows that differ unless
    ``everything``."""
    from core.metrics import METRIC_ORDER

    if len(runs) < 2:
        raise UserError("diff needs at least two runs", "e.g. `amltui diff RUN_A RUN_B`")
    if len({r["id"] for r in runs}) < len(runs):
        raise UserError("the same run is named twice", "name different runs")
    configs = [run_config(store, r) for r in runs]
    metrics = [r.get("metrics") or {} for r in runs]
    config_keys = list(dict.fromkeys(k for c in configs for k in c))
    metric_keys = [k for k in METRIC_ORDER if any(k in m for m in metrics)]
    metric_keys += sorted({k for m in metrics for k in m} - set(metric_keys))
    rows = [_row("run", k, runs) for k in RECORD_FIELDS if any(r.get(k) is not None for r in runs)]
    rows += [_row("config", k, configs) for k in config_keys]
    rows += [_row("metrics", k, metrics) for k in metric_keys]
    return rows if everything else [row for row in rows if row.differs]


def _row(section: str, key: str, sources: list[dict[str, Any]]) -> DiffRow:
    return DiffRow(section, key, [verbatim(s[key]) if key in s else ABSENT for s in sources])
