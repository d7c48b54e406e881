"""`amltui rerun RUN [--set k=v …] [--data-dir DIR]`: a new run with an old run's config plus changes.

A rerun, not a resume with changes: a resumed run continues from its checkpoint, so a change of config (data,
epochs, a loss weight) would leave a run whose epochs were trained under two settings. The rerun is a fresh run
under its own id, launched by the same checks and executors as `amltui run` (amltui/app/service/launch.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amltui.app.errors import UserError
from amltui.app.runs import sweeps
from amltui.app.runs.folders import run_dir
from amltui.app.runs.records import DAMAGED
from amltui.app.runs.store import Store
from amltui.app.service.launch import DispatchOptions, check_new_id, preflight, queue_runs
from core.config import ConfigError, RunConfig, parse_override

Record = dict[str, Any]


@dataclass
class RerunRequest(DispatchOptions):
    overrides: list[str] = field(default_factory=list)  # --set key=value, on top of the old run's config
    data_dir: str | None = None
    run_id: str | None = None  # the new run's id [default: generated]

    def check(self) -> None:
        super().check()
        check_new_id(self.run_id)
        if self.data_dir is not None and any(i.partition("=")[0].strip() == "data_dir" for i in self.overrides):
            raise UserError("--data-dir and --set data_dir=… both set data_dir", "give it once")


def rerun_config(store: Store, record: Record, request: RerunRequest) -> RunConfig:
    """The old run's config.json with the request's changes, validated."""
    if record.get("status") == DAMAGED:
        raise UserError(f"run {record['id']} cannot be rerun: it is damaged ({record.get(DAMAGED)})",
                        "`amltui store rebuild` re-reads the run folders")
    try:
        old = run_dir(store.runs_dir, record["id"]).read_config()
    except (OSError, ValueError) as exc:
        raise UserError(f"run {record['id']}: its config cannot be read ({exc})") from None
    try:
        values = old.to_dict()
        for item in request.overrides:
            key, value = parse_override(item)
            values[key] = value
        if request.data_dir is not None:
            values["data_dir"] = request.data_dir
        values["overrides"] = [*old.overrides, *request.overrides]
        return RunConfig.from_dict(values)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def plan_rerun(store: Store, record: Record, request: RerunRequest) -> RunConfig:
    """Every check before anything is queued (options, config, devices, data); the new run's config."""
    request.check()
    config = rerun_config(store, record, request)
    request.check_devices()
    preflight([config], request)
    return config


def queue_rerun(store: Store, record: Record, config: RunConfig, request: RerunRequest) -> str:
    """Queue the new run (in the old run's sweep, if any); its id. Dispatching it is the caller's."""
    sweep = record.get("sweep") if isinstance(record.get("sweep"), str) else None
    [new_id] = queue_runs(store, [config], [request.run_id], sweep=sweep)
    sweeps.record(store.runs_dir, sweep, None, [new_id])
    changes = ", ".join([*request.overrides, *([f"data_dir={request.data_dir}"] if request.data_dir else [])])
    run_dir(store.runs_dir, new_id).log(f"rerun of {record['id']}" + (f" with {changes}" if changes else ""))
    return new_id
