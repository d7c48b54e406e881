"""One run per seed: find an identical finished run before starting a new one (`amltui run`, the launch form).

Identical = same resolved config (``group``: every scientific value but the seed), same seed, same data
fingerprint and same code version. The fingerprint of the data a new run would use is only known after loading
the data, so it is computed only when a candidate with the same config, seed and code exists; the caller passes
the function that loads it (amltui/app/science/loading.py: loading data is the science's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amltui.app.runs.records import Status
from amltui.app.runs.folders import code_version
from core.config import RunConfig

Fingerprint = Callable[[RunConfig], str]


def find_identical(records: list[dict[str, Any]], configs: list[RunConfig],
                   fingerprint: Fingerprint) -> dict[int, dict[str, Any]]:
    """{index into ``configs``: the latest identical finished run} for the configs that have one."""
    version = code_version()
    cache: dict[tuple, str] = {}
    found: dict[int, dict[str, Any]] = {}
    for i, config in enumerate(configs):
        candidates = [r for r in records if r.get("status") == Status.DONE and r.get("group") == config.group_key()
                      and r.get("seed") == config.seed and r.get("code_version") == version]
        if not candidates:
            continue
        data_key = (config.dataset, config.data_dir, config.train_subset, config.test_subset)
        if data_key not in cache:
            cache[data_key] = fingerprint(config)
        same = [r for r in candidates if r.get("fingerprint") == cache[data_key]]
        if same:
            found[i] = max(same, key=lambda r: (str(r.get("ended") or ""), r["id"]))
    return found


def reuse_message(config: RunConfig, record: dict[str, Any]) -> str:
    return (f"{config.variant} seed {config.seed}: reusing finished run {record['id']} (same resolved config, "
            "seed, data fingerprint and code version); --repeat starts a fresh run")
