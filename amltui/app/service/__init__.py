"""The service layer: every operation the command line (amltui/cli/) and the dashboard (amltui/tui/) both offer.

Front ends translate input and output only; a request the user must change raises ``UserError``
(amltui/app/errors.py) with the message and the fix. Importing this package loads no torch (the science in
core/ is imported inside the functions that run it). See docs/architecture.md.
"""

from __future__ import annotations

from amltui.app.errors import UserError
from amltui.app.runs.records import RESUMABLE
from amltui.app.service.export import (
    RobustnessRequest,
    export_results,
    measure_robustness,
    parse_grid,
    results_table,
    sweep_frontier,
)
from amltui.app.service.launch import (
    EXECUTORS,
    ConfigRequest,
    DispatchOptions,
    LaunchPlan,
    LaunchRequest,
    LaunchResult,
    launch,
    local_slots,
    parse_names,
    parse_seeds,
    plan_launch,
    queue_runs,
    record_sweep,
    resolve_configs,
    resolve_sweep_configs,
    slurm_executor,
    start_detached,
    submit_slurm,
)
from amltui.app.service.manage import (
    CANCELLABLE,
    cancel_one,
    cancellable,
    check_deletable,
    claimed_status,
    delete_run,
    find_run,
    find_runs,
    open_store,
    reap_lost,
    records,
    resume_run,
    with_status,
)
from amltui.app.service.reproduce import ReproduceFront, ReproduceRequest, check_request, reproduce

__all__ = [
    "CANCELLABLE", "EXECUTORS", "RESUMABLE", "ConfigRequest", "DispatchOptions", "LaunchPlan", "LaunchRequest",
    "LaunchResult", "ReproduceFront", "ReproduceRequest", "RobustnessRequest", "UserError", "cancel_one",
    "cancellable", "check_deletable", "check_request", "claimed_status", "delete_run", "export_results",
    "find_run", "find_runs", "launch", "local_slots", "measure_robustness", "open_store", "parse_grid", "parse_names",
    "parse_seeds", "plan_launch", "queue_runs", "reap_lost", "record_sweep", "records", "reproduce",
    "resolve_configs", "resolve_sweep_configs", "results_table", "resume_run", "slurm_executor", "start_detached",
    "submit_slurm", "sweep_frontier", "with_status",
]
