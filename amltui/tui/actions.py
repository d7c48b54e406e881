"""What the dashboard does to runs: launch, cancel, resume, delete, export. Blocking; call from workers.

Every action is the service layer's (amltui/app/service/), as the command line's: the same seed syntax, checks
and messages. Launched runs go to a detached background scheduler that outlives the dashboard. A refusal is a
``UserError`` (message and fix); ``ActionError`` is that type under the name the screens know.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from amltui.app import service
from amltui.app.errors import UserError
from amltui.app.runs.store import Store
from amltui.app.service import LaunchRequest, LaunchResult, parse_seeds, resolve_configs
from amltui.app.service.manage import resume_runs

ActionError = UserError

__all__ = ["ActionError", "LaunchRequest", "LaunchResult", "cancel", "check_devices", "delete", "export_results",
           "launch", "parse_seeds", "resolve_configs", "resume", "resume_many"]


def check_devices(request: LaunchRequest) -> None:
    """The form's device settings (GPUs, slots, executor) are valid; checked before anything is created."""
    request.check()


def launch(runs_dir: Path, request: LaunchRequest) -> LaunchResult:
    """Create queued runs for the request and hand them to a detached scheduler. As `amltui run`: a (variant,
    seed) with an identical finished run is reused with a message instead of queued again, unless ``repeat``."""
    return service.launch(Store(runs_dir), request)


def _record(store: Store, run_id: str) -> dict:
    record = store.get(run_id)
    if record is None:
        raise UserError(f"run {run_id} is no longer in the index", "it was deleted meanwhile")
    return service.find_run(store, run_id)


def cancel(runs_dir: Path, run_id: str) -> str:
    store = Store(runs_dir)
    return f"{run_id}: {service.cancel_one(store, _record(store, run_id))}"


def resume(runs_dir: Path, run_id: str) -> str:
    """Queue a failed, cancelled or orphaned run again and start a detached scheduler for it (as `amltui
    resume --detach`)."""
    store = Store(runs_dir)
    service.reap_lost(store)
    service.resume_run(store, _record(store, run_id))
    service.start_detached(store, [run_id], service.DispatchOptions())
    return f"{run_id}: queued again; it continues from its last checkpoint"


def resume_many(runs_dir: Path, run_ids: list[str]) -> str:
    """Queue several runs again and hand them all to ONE detached scheduler (a scheduler per run would start
    as many, each with its own slots). A run that cannot be resumed is said, and the others still resume."""
    store = Store(runs_dir)
    service.reap_lost(store)
    records, lines = [], []
    for run_id in run_ids:
        try:
            records.append(_record(store, run_id))
        except UserError as exc:
            lines.append(str(exc))
    queued, refused = resume_runs(store, records)
    lines += refused
    if queued:
        service.start_detached(store, queued, service.DispatchOptions())
        lines.insert(0, f"{queued[0]}: queued again; it continues from its last checkpoint" if len(queued) == 1
                     else f"{len(queued)} runs queued again for one scheduler: {', '.join(queued)}; each continues "
                     "from its last checkpoint")
    if refused or len(queued) < len(run_ids):
        raise UserError("\n".join(lines))
    return "\n".join(lines)


def delete(runs_dir: Path, run_id: str) -> str:
    store = Store(runs_dir)
    record = _record(store, run_id)
    service.check_deletable(store, [record])
    return f"removed {run_id} ({service.delete_run(store, record)})"


def export_results(runs_dir: Path, when: dt.datetime | None = None) -> Path:
    """Write the seed-aggregated table (as `amltui export`, Markdown) to <runs_dir>/results-<time>.md."""
    return service.export_results(Store(runs_dir), when)
