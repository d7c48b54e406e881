"""The Slurm executor: one sbatch job per run, submitted through submitit.

The job runs the same worker as a local launch (amltui.app.science.worker.run_worker), so a run's lifecycle and
record are the same: queued → running → done | failed | cancelled, kept up to date by the worker. What Slurm
adds is recorded in the run: ``executor="slurm"``, ``slurm_job_id``, ``slurm_folder`` (submitit's folder with
the sbatch script and the job's stdout/stderr) and the resources asked for.

Who marks a run cancelled, without races: the job *claims* its run (queued → running, atomically under the
run's lock) before the worker starts, with its SIGTERM handler already installed. ``cancel`` first tries to
mark a still-queued run cancelled itself (it wins only if the job has not claimed it; a job that starts later
sees "cancelled" and exits), then calls ``scancel``: a claimed run gets SIGTERM and its worker records
"cancelled". A job that dies without the worker reporting (kill -9, node failure, OOM) leaves a record that
says queued/running for a job that no longer exists; ``reconcile`` finds those and marks them failed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from amltui.app.fsutil import make_folder
from amltui.app.runs.folders import run_dir
from amltui.app.runs.records import ACTIVE, SLURM_JOB_ID, STOPPED, SUBMITTABLE, Status, now
from amltui.app.runs.states import change_record, request_cancel, set_status
from amltui.app.runs.store import Store

JOB_NAME_PREFIX = "amltui-"
START_HINT = "start the cluster with: bash .ci/slurm.sh"
# Slurm job states after which no process of the job is left (squeue/scontrol JobState names).
ENDED_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                          "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "TIMEOUT"})
USABLE_NODE_STATES = ("idle", "mixed", "allocated", "completing")
SLURM_LIVE = ACTIVE  # what a Slurm run's record says while its job may still run
_TIMEOUT_S = 30  # for a Slurm client command: slurmctld answers in milliseconds when it is up


class SlurmError(RuntimeError):
    """Slurm refused or could not answer a request; the message says what Slurm said."""


def _slurm_cmd(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which(args[0]) is None:
        raise SlurmError(f"{args[0]} not found: Slurm's client tools are not installed here ({START_HINT})")
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{' '.join(args)}` did not answer in {_TIMEOUT_S} s; is slurmctld up?") from None
    if check and proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        raise SlurmError(f"`{' '.join(args)}` failed: {said}")
    return proc


def slurm_available() -> tuple[bool, str]:
    """(True, summary) when sinfo answers and shows a usable node; else (False, why)."""
    for tool in ("sinfo", "sbatch", "srun", "scancel", "scontrol"):
        if shutil.which(tool) is None:
            return False, f"{tool} not found: Slurm's client tools are not installed here"
    try:
        proc = _slurm_cmd(["sinfo", "-h", "-N", "-o", "%N %P %T"])
    except SlurmError as e:
        return False, str(e)
    nodes = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    usable = [n for n in nodes if len(n) == 3 and n[2].rstrip("*~#!%$@^-") in USABLE_NODE_STATES]
    if not usable:
        return False, f"sinfo shows no usable node ({proc.stdout.strip() or 'no nodes'})"
    return True, ", ".join(f"{n} ({partition}, {state})" for n, partition, state in usable)


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """Slurm's state of each job it still knows (``{"17": "RUNNING"}``); jobs it forgot are left out.

    Asks ``scontrol`` (works without accounting); a job that has left slurmctld's memory (MinJobAge) is looked
    up in ``sacct`` when accounting is enabled. Raises SlurmError when slurmctld does not answer, so a
    controller outage is never mistaken for "every job is gone".
    """
    # A record is a file anyone with write access to the runs folder can edit: only job ids reach Slurm's tools.
    wanted = {str(j) for j in job_ids if SLURM_JOB_ID.fullmatch(str(j))}
    if not wanted:
        return {}
    proc = _slurm_cmd(["scontrol", "-o", "show", "job"])
    states: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("JobId") in wanted and "JobState" in fields:
            states[fields["JobId"]] = fields["JobState"]
    missing = sorted(wanted - states.keys())
    if missing:
        acct = _slurm_cmd(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(missing)], check=False)
        if acct.returncode == 0:  # "accounting storage is disabled" otherwise
            for line in acct.stdout.splitlines():
                job, _, state = line.partition("|")
                if job in wanted and state:
                    states[job] = state.split()[0]  # "CANCELLED by 0" → CANCELLED
    return states


class SlurmTimeLimit(Exception):
    """Raised in a Slurm job when Slurm warns that it will stop the job (time limit or preemption)."""


def _ignore_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _job_main(runs_dir: str, run_id: str, resume: bool) -> int:
    """What the Slurm job runs (pickled by submitit; runs on the compute node)."""
    from amltui.app.science import safepoint
    from amltui.app.science.worker import EXIT_CANCELLED, EXIT_FAILED, run_worker

    def on_warning(signum: int, frame: object) -> None:
        # sbatch --signal sends this ahead of the time limit (or on preemption); without a handler submitit
        # would requeue or stop the job without telling the run. The run fails at its next safe point.
        safepoint.fail_at_next_safe_point(SlurmTimeLimit(
            f"Slurm job {job_id} is about to be stopped (time limit or preemption); `amltui resume {run_id}` "
            "continues from the last checkpoint"))

    job_id = os.environ.get("SLURM_JOB_ID", "?")
    store = Store(Path(runs_dir))
    rd = run_dir(store.runs_dir, run_id)
    # submitit ignores SIGTERM in the job; from here on a cancel (scancel) must stop the run, at a safe point of
    # the worker (a flag, never an exception raised wherever the job happens to be).
    safepoint.install(f" (Slurm job {job_id})")
    signal.signal(signal.SIGUSR2, on_warning)
    try:
        claimed = set_status(store, run_id, Status.RUNNING, expect=(Status.QUEUED,), slurm_job_id=job_id,
                             host=socket.gethostname(), cancel_requested=None)  # a queued run has none pending
        if claimed is None:
            rd.log(f"Slurm job {job_id} started, but the run is no longer queued (cancelled?); not running it")
            return EXIT_CANCELLED
        code = run_worker(Path(runs_dir), run_id, resume=resume)
    finally:
        _ignore_signals()  # the run's record is final: a late signal must not raise inside submitit
    if code == EXIT_FAILED:
        # Make Slurm's own view (sacct, squeue) agree with the record: the job FAILED.
        error = (store.get(run_id) or {}).get("error")
        raise RuntimeError(f"run {run_id} failed: {error}")
    return code


@dataclass(repr=False, eq=False)
class SlurmExecutor:
    """Runs runs of ``runs_dir`` as Slurm jobs (one job per run), through submitit."""

    runs_dir: Path
    _: KW_ONLY
    partition: str | None = None
    time_minutes: int = 60
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # raw sbatch options, e.g. {"qos": "high", "account": "lab"}

    def __post_init__(self) -> None:
        if self.time_minutes < 1:
            raise ValueError(f"time_minutes must be at least 1, got {self.time_minutes}")
        if self.gpus_per_node < 0:
            raise ValueError(f"gpus_per_node must be 0 or more, got {self.gpus_per_node}")
        if self.cpus_per_task < 1:
            raise ValueError(f"cpus_per_task must be at least 1, got {self.cpus_per_task}")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise ValueError(f"mem_gb must be positive, got {self.mem_gb}")
        self.runs_dir = Path(self.runs_dir)
        self.extra = dict(self.extra or {})

    def __repr__(self) -> str:
        return (f"SlurmExecutor({str(self.runs_dir)!r}, partition={self.partition!r}, "
                f"time_minutes={self.time_minutes}, gpus_per_node={self.gpus_per_node})")

    def store(self) -> Store:
        return Store(self.runs_dir)

    def folder(self, run_id: str) -> Path:
        """submitit's folder of a run's jobs: sbatch script, pickles, stdout/stderr (``%j`` = job id)."""
        return self.runs_dir / "slurm" / run_id

    def _parameters(self, run_id: str) -> dict[str, Any]:
        params: dict[str, Any] = {"name": JOB_NAME_PREFIX + run_id, "timeout_min": self.time_minutes,
                                  "cpus_per_task": self.cpus_per_task, "nodes": 1, "tasks_per_node": 1}
        if self.gpus_per_node:  # not "--gpus-per-node=0": clusters without GPU GRES reject that
            params["gpus_per_node"] = self.gpus_per_node
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.extra:
            params["slurm_additional_parameters"] = dict(self.extra)
        return params

    def submit(self, run_id: str, *, resume: bool = False) -> str:
        """Submit a queued (or failed / cancelled) run as a Slurm job; returns the Slurm job id.

        The record stays "queued" until the job starts and its worker takes it. If Slurm refuses the job, the
        run is marked failed with sbatch's message and SlurmError is raised with it.
        """
        import submitit  # heavy-ish and only needed here

        store = self.store()
        rd = run_dir(self.runs_dir, run_id)
        if not rd.record_file.exists():
            raise SlurmError(f"no run {run_id!r} in {self.runs_dir} (no {rd.record_file}); create it first")
        previous = rd.read_record()
        old_job = previous.get("slurm_job_id") if previous.get("executor") == "slurm" else None
        if old_job and job_states([str(old_job)]).get(str(old_job), "GONE") not in ENDED_STATES | {"GONE"}:
            raise SlurmError(f"run {run_id} is already submitted as Slurm job {old_job}; cancel it first")
        folder = self.folder(run_id)
        resumed = previous.get("status") in STOPPED
        queued = set_status(store, run_id, Status.QUEUED, expect=SUBMITTABLE, executor="slurm",
                            slurm_job_id=None, slurm_folder=str(folder), slurm_partition=self.partition,
                            slurm_time_min=self.time_minutes, slurm_gpus_per_node=self.gpus_per_node,
                            ended=None, error=None, traceback=None, pid=None, cancel_requested=None, stall=None,
                            resumes=previous.get("resumes", 0) + resumed)
        if queued is None:
            status = rd.read_record().get("status")
            raise SlurmError(f"run {run_id} is {status}; only a queued, failed or cancelled run can be submitted")
        make_folder(folder.parent)  # runs/slurm/<run>: real folders, never links out of the runs folder
        make_folder(folder)
        try:
            # The job starts in the submitting folder: `-P` keeps that folder off sys.path (see local.PYTHON).
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                             slurm_python=f"{shlex.quote(sys.executable)} -P")
            executor.update_parameters(**self._parameters(run_id))
            job = executor.submit(_job_main, str(self.runs_dir.resolve()), run_id, resume)
        except Exception as e:  # sbatch refusing (FailedJobError), no srun here, an unwritable folder, …
            said = str(e).strip() or type(e).__name__
            where = f"partition {self.partition!r}" if self.partition else "the default partition"
            error = f"Slurm refused the job ({where}): {said}"
            set_status(store, run_id, Status.FAILED, expect=(Status.QUEUED,), error=error)
            raise SlurmError(f"run {run_id}: {error}") from e
        job_id = str(job.job_id)
        # Whatever the status is by now (the job may have started and claimed the run already).
        change_record(store, run_id, slurm_job_id=job_id, submitted=now())
        rd.log(f"submitted to Slurm: job {job_id}, partition {self.partition or '(default)'}, "
               f"time {self.time_minutes} min, {self.cpus_per_task} CPU(s), {self.gpus_per_node} GPU(s); "
               f"{'resuming; ' if resume else ''}job output in {folder}")
        return job_id

    def cancel(self, run_id: str) -> None:
        """Cancel a run's Slurm job. A job still pending is cancelled here; a running one gets SIGTERM from
        Slurm and its worker records "cancelled" (watch the record). A finished run is left alone."""
        store = self.store()
        record = store.get(run_id)
        if record is None:
            raise SlurmError(f"no run {run_id!r} in {store.path}")
        if record.get("executor") != "slurm":
            raise SlurmError(f"run {run_id} was not submitted to Slurm (executor {record.get('executor')!r})")
        if record.get("status") not in SLURM_LIVE:
            return
        rd = run_dir(self.runs_dir, run_id)
        job_id = record.get("slurm_job_id")
        if job_id is not None and not SLURM_JOB_ID.fullmatch(str(job_id)):
            # Never hand a record's text to scancel unchecked: "--user=root" would cancel someone's every job.
            raise SlurmError(f"run {run_id}: its slurm_job_id {job_id!r} is not a Slurm job id; refusing to call "
                             "scancel with it (was run.json edited?); cancel the job yourself with scancel JOBID")
        job = f"Slurm job {job_id}" if job_id else "its Slurm job"
        # Wins only if the job has not claimed the run; a job that starts afterwards sees this and exits.
        marked = set_status(store, run_id, Status.CANCELLED, expect=(Status.QUEUED,), pid=None,
                            error=f"cancelled before it started ({job})")
        if marked is None:
            # Running: recorded before the signal, so the run ends "cancelled" even if the job is killed before
            # its worker can answer (reconcile reads it), and a worker that missed the signal still stops.
            request_cancel(store, run_id, f"cancelled with scancel {job_id}")
        if job_id:
            proc = _slurm_cmd(["scancel", str(job_id)], check=False)
            if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
                raise SlurmError(f"scancel {job_id} failed: {(proc.stderr or proc.stdout).strip()}")
            rd.log(f"cancel requested: scancel {job_id}" + ("" if marked is None else " (it had not started)"))

    def reconcile(self, store: Store | None = None) -> list[str]:
        """Mark failed (or cancelled) the Slurm runs whose job ended without the worker reporting.

        Looks at records with executor "slurm" that say queued/running; returns the ids it changed.
        """
        store = store or self.store()
        live = [r for r in store.all() if r.get("executor") == "slurm" and r.get("status") in SLURM_LIVE
                and r.get("slurm_job_id") and SLURM_JOB_ID.fullmatch(str(r["slurm_job_id"]))]
        if not live:
            return []
        states = job_states(str(r["slurm_job_id"]) for r in live)
        changed: list[str] = []
        for record in live:
            job_id = str(record["slurm_job_id"])
            state = states.get(job_id)
            if state is not None and state not in ENDED_STATES:
                continue  # pending, running, completing, suspended, …: the worker may still report
            label = state or "it left the queue"
            requested = run_dir(store.runs_dir, record["id"]).read_record().get("cancel_requested")
            status = Status.CANCELLED if state == "CANCELLED" or requested else Status.FAILED
            error = f"lost: Slurm job {job_id} ended ({label}) without the worker reporting"
            if requested:
                error = f"{requested} (Slurm job {job_id} ended, {label}, before the worker recorded it)"
            # Only if the record still says queued/running: a worker reporting meanwhile wins.
            if set_status(store, record["id"], status, expect=SLURM_LIVE | {Status.STALLED}, error=error,
                          pid=None):
                changed.append(record["id"])
        return changed


def parse_time_minutes(text: str) -> int:
    """A time limit in sbatch's --time formats, for the CLI, as whole minutes (rounded up, at least 1).

    "90" (minutes), "90:30" (min:s), "1:30:00" (h:min:s), "2-0" (d-h), "2-0:30" (d-h:min), "2-0:30:00".
    """
    text = text.strip()
    if not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", text):
        raise ValueError(f"time limit {text!r}: use minutes (90), h:mm:ss (1:30:00) or d-hh:mm:ss (2-00:00:00)")
    days_text, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days_text:  # after "d-" the first field is hours
        h, m, s = (parts + [0, 0])[:3]
        seconds = int(days_text) * 86400 + h * 3600 + m * 60 + s
    elif len(parts) == 3:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        seconds = parts[0] * 60 + (parts[1] if len(parts) == 2 else 0)
    return max(1, -(-seconds // 60))
