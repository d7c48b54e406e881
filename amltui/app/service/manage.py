"""Acting on existing runs: find, resume, cancel, delete (the command line and the dashboard alike)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any

from amltui.app.errors import UserError
from amltui.app.executors.control import cancel_run
from amltui.app.executors.liveness import pid_alive, reap
from amltui.app.fsutil import FileLock, check_runs_folder, read_json, refuse_planted_links
from amltui.app.runs.filters import FilterError, check_value
from amltui.app.runs.folders import default_runs_dir, run_dir
from amltui.app.runs.owners import worker_alive
from amltui.app.runs.records import ACTIVE, DAMAGED, LIVE, WORKING, Status, inspect, inspect_all
from amltui.app.runs.states import requeue
from amltui.app.runs.store import (
    RUN_LOCK_FILENAME,
    RUN_RECORD_FILENAME,
    Store,
    StoreError,
    delete_record,
    mark_folderless,
    validate_run_id,
)
from amltui.app.service.launch import DispatchOptions, preflight

Record = dict[str, Any]
CANCELLABLE = LIVE  # queued, running, stalled, orphaned


def records(store: Store) -> list[Record]:
    """Every record, checked: a damaged one (bad fields, folder gone) has status "damaged" and the reason."""
    try:
        return inspect_all(store.all(), store.runs_dir)
    except StoreError as exc:
        raise UserError(str(exc)) from None


def reap_lost(store: Store) -> list[str]:
    """Mark dead workers' runs failed (lost) before showing or changing anything."""
    try:
        return reap(store)
    except StoreError as exc:
        raise UserError(str(exc)) from None


def find_run(store: Store, text: str) -> Record:
    """A run by its id or a unique prefix of it (checked: a damaged record says so)."""
    try:
        validate_run_id(text)
        record = store.get(text)
    except (ValueError, StoreError) as exc:
        raise UserError(str(exc)) from None
    if record is not None:
        return _no_planted_links(store, inspect(record, store.runs_dir))
    matches = [r for r in records(store) if r["id"].startswith(text)]
    if len(matches) == 1:
        return _no_planted_links(store, matches[0])
    if not matches:
        raise UserError(f"no run {text!r} in {store.path}", "`amltui ls` lists the runs")
    raise UserError(f"{text!r} matches {len(matches)} runs: {listed([r['id'] for r in matches])}",
                    "be more specific")


def _no_planted_links(store: Store, record: Record) -> Record:
    """Refuse a run whose folder is, or holds, a symbolic link: every command would write through it."""
    try:
        refuse_planted_links(store.runs_dir / record["id"])
    except OSError as exc:
        raise UserError(f"run {record['id']}: {exc}") from None
    return record


def find_runs(store: Store, texts: list[str]) -> list[Record]:
    """``find_run`` of each text with one read of the index (naming 200 runs must not read it 200 times)."""
    try:
        everything = {r["id"]: r for r in store.all()}
    except StoreError as exc:
        raise UserError(str(exc)) from None
    found = []
    for text in texts:
        matches = [everything[text]] if text in everything else [r for i, r in everything.items() if i.startswith(text)]
        if len(matches) != 1:
            find_run(store, text)  # says why (no such run, an invalid id, several matches)
        found.append(_no_planted_links(store, inspect(matches[0], store.runs_dir)))
    return found


def listed(ids: list[str], most: int = 8) -> str:
    """'a, b, c' — at most ``most`` ids, then '… and N more' (a list is never cut silently)."""
    more = f" … and {len(ids) - most} more" if len(ids) > most else ""
    return ", ".join(ids[:most]) + more


def with_status(store: Store, statuses: list[str]) -> list[Record]:
    """The runs whose status is one of ``statuses`` (each checked: a misspelt status is refused, not empty)."""
    try:
        wanted = {check_value("status", s, "--status") for s in statuses}
    except FilterError as exc:
        raise UserError(str(exc)) from None
    return [r for r in records(store) if r.get("status") in wanted]


def claimed_status(record: Record) -> str | None:
    """The status a record claims, even when it is damaged (a damaged running run may still have a worker)."""
    return record.get("stored_status") if record.get("status") == DAMAGED else record.get("status")


def resume_run(store: Store, record: Record, options: Any = None) -> str:
    """Queue a failed, cancelled or orphaned run again (it continues from its last checkpoint); its id.
    Dispatching it is the caller's (launch.start_detached, or the command line's foreground scheduler).
    What would fail it again without training (its data gone, a GPU that is not there) is refused first;
    ``options`` (launch.DispatchOptions) are where it will run."""
    run_id, status = record["id"], record.get("status")
    if status == DAMAGED:
        raise UserError(f"run {run_id} cannot be resumed: it is damaged ({record[DAMAGED]})",
                        f"`amltui store rebuild` re-reads the run folders, `amltui rm {run_id}` deletes it")
    if status == Status.DONE:
        raise UserError(f"run {run_id} is already done", f"`amltui eval {run_id}` re-evaluates it")
    if status == Status.STALLED:
        raise UserError(f"run {run_id} is stalled: its worker (pid {record.get('pid')}) still owns it but has "
                        "stopped beating (paused or hung)",
                        f"resume that process (kill -CONT) or `amltui cancel {run_id}` it first")
    if status in ACTIVE:
        raise UserError(f"run {run_id} is {status}", f"cancel it first (`amltui cancel {run_id}`)")
    _preflight_resume(store, record, options)
    try:
        requeued = requeue(store, run_id)
    except (ValueError, StoreError) as exc:
        raise UserError(f"run {run_id} cannot be resumed: {exc}") from None
    if requeued is None:
        raise UserError(f"run {run_id} is {(store.get(run_id) or {}).get('status')}; only a failed, cancelled "
                        "or orphaned run can be resumed")
    return run_id


def resume_runs(store: Store, records: list[Record], options: Any = None) -> tuple[list[str], list[str]]:
    """resume_run for several runs: (the ids queued again, one line per run refused); a refusal does not stop
    the others. The caller hands all the queued ids to ONE scheduler (launch.start_detached), not one each."""
    queued, refused = [], []
    for record in records:
        try:
            queued.append(resume_run(store, record, options))
        except UserError as exc:
            refused.append(str(exc))
    return queued, refused


def _preflight_resume(store: Store, record: Record, options: Any) -> None:
    try:
        config = run_dir(store.runs_dir, record["id"]).read_config()
    except (OSError, ValueError):
        return  # the worker reports an unreadable config with the details
    try:
        preflight([config], options or DispatchOptions())
    except UserError as exc:
        raise UserError(f"run {record['id']} cannot be resumed as it is: {exc.message}",
                        f"`amltui rerun {record['id']} --set KEY=VALUE` (or --data-dir DIR) starts a new run with the "
                        "fix") from None


def cancellable(store: Store) -> list[Record]:
    """The runs `cancel --all` stops: queued, orphaned, running or stalled (damaged ones by what they claim)."""
    return [r for r in records(store) if claimed_status(r) in CANCELLABLE]


def cancel_one(store: Store, record: Record) -> str:
    """Cancel one run; what happened. Raises OSError, ValueError or RuntimeError (StoreError, SlurmError)."""
    if record.get("status") != DAMAGED:
        return cancel_run(store, record)
    folder = run_dir(store.runs_dir, record["id"]).path
    claimed = claimed_status(record)
    if claimed not in ACTIVE:
        return f"damaged ({record[DAMAGED]}); nothing to cancel"
    if not folder.is_dir() or folder.is_symlink():
        # No folder: no worker can use it. The index record is all that is left; mark it so it stops counting.
        mark_folderless(store, record["id"], {"status": Status.CANCELLED, "pid": None,
                                              "error": f"cancelled: {record[DAMAGED]}"})
        return f"marked cancelled ({record[DAMAGED]}); `amltui rm {record['id']}` deletes the record"
    # The raw record: its own checks (e.g. a Slurm job id that is no job id) give the precise refusal.
    return cancel_run(store, store.get(record["id"]) or {**record, "status": claimed})


def _worker_alive(record: Record) -> bool:
    """A damaged record that says running and names a live worker on this host (its folder is in use)."""
    pid = record.get("pid")
    return (claimed_status(record) == Status.RUNNING and isinstance(pid, int) and pid > 0
            and record.get("host") == socket.gethostname() and pid_alive(pid))


def check_deletable(store: Store, targets: list[Record]) -> None:
    """Refuse deleting live runs, folders that are symbolic links, or from a folder that is not writable."""
    active = [r["id"] for r in targets if r.get("status") in (Status.QUEUED, *WORKING) or _worker_alive(r)]
    if active:
        raise UserError(f"{', '.join(active)} still queued, running or stalled", "`amltui cancel` them first")
    for record in targets:
        folder = run_dir(store.runs_dir, record["id"]).path
        if folder.is_symlink():
            raise UserError(f"{folder} is a symbolic link to {os.readlink(folder)}; amltui never deletes through a "
                            f"link", f"remove the link yourself (rm {folder}) and then `amltui rm {record['id']}`")
    if not os.access(store.runs_dir, os.W_OK):
        raise UserError(f"cannot delete runs: the runs folder {store.runs_dir} is not writable by you")


TOMBSTONE_PREFIX = ".deleted-"  # a run folder being deleted: renamed first, so a refused rm deletes nothing


def delete_run(store: Store, record: Record) -> Path:
    """Delete a run's folder and record (after check_deletable); the folder it removed. Raises OSError, or
    UserError when another command removed the run first (code 1) or resumed it meanwhile (code 2).

    Under the run's lock (the one every record change takes, so a resume and an rm exclude each other) the
    record is read again and the folder is renamed to a tombstone in the runs folder in one step; only then is
    the tombstone removed. Of several concurrent deletes exactly one renames the folder; the others find it gone.
    """
    run_id = record["id"]
    folder = run_dir(store.runs_dir, run_id).path
    if not folder.is_dir():
        # A folder there when the run was found, or a tombstone of it now: another rm is deleting the run.
        if record.get("status") != DAMAGED or _being_deleted(store, run_id) or not delete_record(store, run_id):
            raise _already_gone(run_id)
        return folder
    tomb = _entomb(store, folder, run_id)
    delete_record(store, run_id)  # while the tombstone is there, so a concurrent rm knows the run is taken
    shutil.rmtree(tomb)
    return folder


def _being_deleted(store: Store, run_id: str) -> bool:
    return any(store.runs_dir.glob(f"{TOMBSTONE_PREFIX}{run_id}-*"))


def _already_gone(run_id: str) -> UserError:
    return UserError(f"run {run_id} is already gone: another command removed it first", code=1)


def _entomb(store: Store, folder: Path, run_id: str) -> Path:
    """Holding the run's lock: check the run may still be deleted, and rename its folder to a tombstone."""
    lock = FileLock(folder / RUN_LOCK_FILENAME)
    try:
        lock.acquire()
    except FileNotFoundError:  # renamed away by another rm before we could open its lock
        raise _already_gone(run_id) from None
    try:
        assert lock.fd is not None
        try:
            same = os.path.samestat(os.fstat(lock.fd), os.stat(folder / RUN_LOCK_FILENAME, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if not same:  # we waited on the lock of a folder another rm has meanwhile renamed
            raise _already_gone(run_id)
        try:
            status = read_json(folder / RUN_RECORD_FILENAME).get("status")
        except (OSError, ValueError, AttributeError):
            status = None  # a damaged run.json: deleting it is what rm is for
        if status in (Status.QUEUED, *WORKING) or worker_alive(folder):
            raise UserError(f"run {run_id} is {status or 'in use by a worker'} now (resumed meanwhile?); "
                            "nothing was deleted", f"`amltui cancel {run_id}` it first")
        tomb = store.runs_dir / f"{TOMBSTONE_PREFIX}{run_id}-{secrets.token_hex(4)}"
        os.rename(folder, tomb)
    finally:
        lock.release()
    return tomb


def open_store(runs_dir: Path | None) -> Store:
    """The store of ``runs_dir`` (default: $AMLTUI_RUNS_DIR or ./runs); a corrupt index is a UserError."""
    try:
        store = Store(runs_dir or default_runs_dir())
        check_runs_folder(store.runs_dir)  # a planted link at store.json.lock, .slots, … is refused up front
        return store
    except (StoreError, OSError) as exc:
        raise UserError(str(exc)) from None
