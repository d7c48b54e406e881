"""The Slurm executor against a real Slurm cluster: real sbatch jobs, real workers, real records.

Needs a running cluster (one node is enough): `bash .ci/slurm.sh` starts one on this machine from Debian's
packages. slurmd runs the jobs on this same machine, so the tests' tmp_path is visible to the jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amltui.app.executors.slurm import SlurmError, SlurmExecutor, job_states, parse_time_minutes, slurm_available
from amltui.app.runs.folders import create_run, run_dir
from amltui.app.runs.states import set_status
from amltui.app.runs.store import Store
from core.config import RunConfig
from tests.helpers import ROOT, wait_until

JOB_START_S = 120  # queueing + a fresh Python importing torch, on two busy cores
RUN_S = 180


@pytest.fixture(scope="module", autouse=True)
def cluster() -> str:
    ok, why = slurm_available()
    if not ok:
        pytest.fail(f"no usable Slurm cluster ({why}); start the cluster with: bash .ci/slurm.sh")
    return why


@pytest.fixture(autouse=True)
def no_leftover_jobs(tmp_path: Path) -> Any:
    """A failing test must not leave a 200-epoch job holding one of the cluster's cores."""
    yield
    if (tmp_path / "store.json").exists():
        for record in Store(tmp_path).all():
            if record.get("slurm_job_id"):
                subprocess.run(["scancel", str(record["slurm_job_id"])], capture_output=True, timeout=30)


def tiny_config(**fields: Any) -> RunConfig:
    base: dict[str, Any] = dict(dataset="synthetic", arch="small", epochs=1, train_subset=256, test_subset=128,
                                batch_size=64, eval_batch_size=128, pgd_steps=3, threads=1, eval_ia=False)
    return RunConfig.resolve("ml_sa", "quick", **{**base, **fields})


def in_queue(job_id: str) -> bool:
    state = job_states([job_id]).get(job_id)
    return state is not None and state in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")


def worker_started(store: Store, run_id: str) -> Callable[[], dict | None]:
    """The record once the worker has taken the run (running, with its pid)."""
    def check() -> dict | None:
        record = store.get(run_id)
        assert record is not None
        assert record["status"] in ("queued", "running"), f"run ended early: {record['status']} {record['error']}"
        return record if record["status"] == "running" and record.get("pid") else None
    return check


def finished(store: Store, run_id: str) -> Callable[[], dict | None]:
    def check() -> dict | None:
        record = store.get(run_id)
        return record if record and record["status"] not in ("queued", "running") else None
    return check


def job_log(folder: str) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(Path(folder).glob("*_log.*")))


@pytest.mark.slow
def test_tiny_run_completes_through_slurm(tmp_path: Path) -> None:
    store = Store(tmp_path)
    create_run(store, tiny_config(), "tiny")
    job_id = SlurmExecutor(tmp_path, time_minutes=10).submit("tiny")
    assert job_id.isdigit()
    record = store.get("tiny")
    assert record is not None
    assert record["executor"] == "slurm" and record["slurm_job_id"] == job_id
    assert record["status"] in ("queued", "running")  # queued until the worker takes it

    record = wait_until(finished(store, "tiny"), "the run to finish", RUN_S, every=0.5)
    assert record["status"] == "done", f"{record['error']}\n{job_log(record['slurm_folder'])}"
    assert record["slurm_job_id"] == job_id and record["executor"] == "slurm"
    assert set(record["metrics"]) >= {"A_orig", "A_SA", "A_PGD"}
    assert all(0.0 <= v <= 100.0 for v in record["metrics"].values())
    assert record["epoch"] == 1 and record["error"] is None
    assert run_dir(tmp_path, "tiny").read_record()["status"] == "done"  # the run folder agrees
    log = run_dir(tmp_path, "tiny").log_file.read_text()
    assert f"submitted to Slurm: job {job_id}" in log
    folder = Path(record["slurm_folder"])
    assert (folder / f"{job_id}_submission.sh").exists()
    script = (folder / f"{job_id}_submission.sh").read_text()
    assert "--job-name=amltui-tiny" in script and "--time=10" in script
    wait_until(lambda: not in_queue(job_id), "the job to leave the queue", 30, every=0.5)
    assert SlurmExecutor(tmp_path).reconcile(store) == []  # a finished run is left alone


def submit_long(tmp_path: Path, run_id: str) -> tuple[Store, SlurmExecutor, str]:
    """A 200-epoch run submitted as a Slurm job (it runs until stopped): the store, the executor and the job id."""
    store = Store(tmp_path)
    create_run(store, tiny_config(epochs=200), run_id)
    executor = SlurmExecutor(tmp_path, time_minutes=30)
    return store, executor, executor.submit(run_id)


@pytest.mark.slow
def test_cancel_running_job_goes_through_slurm(tmp_path: Path) -> None:
    store, executor, job_id = submit_long(tmp_path, "long")
    record = wait_until(worker_started(store, "long"), "the worker to start", JOB_START_S, every=0.5)
    assert record["slurm_job_id"] == job_id
    assert job_states([job_id]).get(job_id) == "RUNNING"

    executor.cancel("long")
    record = wait_until(finished(store, "long"), "the run to be cancelled", 30, every=0.5)
    assert record["status"] == "cancelled", f"{record['error']}\n{job_log(record['slurm_folder'])}"
    assert "SIGTERM" in record["error"]  # the worker itself recorded Slurm's signal
    assert record["ended"] is not None and record["pid"] is None
    wait_until(lambda: not in_queue(job_id), "the job to leave the queue", 30, every=0.5)
    assert job_states([job_id]).get(job_id) in (None, "CANCELLED")
    assert "cancel requested: scancel" in run_dir(tmp_path, "long").log_file.read_text()

    # A cancelled run is submitted again to resume: a new job, the same lifecycle.
    second = executor.submit("long", resume=True)
    assert second != job_id and store.get("long")["status"] in ("queued", "running")
    record = wait_until(worker_started(store, "long"), "the resumed worker to start", JOB_START_S, every=0.5)
    assert record["slurm_job_id"] == second and record["error"] is None
    wait_until(lambda: "resuming on" in run_dir(tmp_path, "long").log_file.read_text(), "the resumed worker's log",
               30, every=0.5)
    executor.cancel("long")
    assert wait_until(finished(store, "long"), "the run to be cancelled again", 30, every=0.5)["status"] == "cancelled"


@pytest.mark.slow
@pytest.mark.parametrize("phase, says", [("import", "stopped while importing"), ("train", "stopped while training"),
                                         ("checkpoint", "stopped while writing a checkpoint")])
def test_scancel_at_a_held_phase_ends_cancelled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str,
                                                says: str) -> None:
    # The job inherits the environment: its worker holds at the phase (amltui.app.science.safepoint) until cancelled.
    monkeypatch.setenv("AMLTUI_TEST_HOLD", phase)
    store, executor, job_id = submit_long(tmp_path, "held")
    wait_until((tmp_path / "held" / f"hold-{phase}").exists, f"the job's worker to hold at {phase}", JOB_START_S,
               every=0.1)
    executor.cancel("held")
    record = wait_until(finished(store, "held"), "the run to be cancelled", 60, every=0.5)
    assert record["status"] == "cancelled", f"{record['error']}\n{job_log(record['slurm_folder'])}"
    # Whether the worker read the request in the record or got SIGTERM first depends on timing; either way the
    # reason names the scancel and the job.
    assert record["error"].startswith(f"cancelled with scancel {job_id}"), record["error"]
    assert says in record["error"] and record["pid"] is None
    assert [p.name for p in (tmp_path / "held").iterdir() if ".tmp" in p.name] == []
    if phase == "checkpoint":  # the epoch being written when the cancel came is kept whole
        import torch

        assert torch.load(tmp_path / "held" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    wait_until(lambda: not in_queue(job_id), "the job to leave the queue", 60, every=0.5)


@pytest.mark.slow
def test_scancel_as_soon_as_the_job_claims_the_run(tmp_path: Path) -> None:
    # Cancelled the moment the record says running (the worker may not even listen for signals yet).
    store, executor, job_id = submit_long(tmp_path, "quick")
    wait_until(lambda: store.get("quick")["status"] == "running", "the job to claim the run", JOB_START_S, every=0.05)
    executor.cancel("quick")
    record = wait_until(finished(store, "quick"), "the run to end", 60, every=0.5)
    assert record["status"] == "cancelled", f"{record['error']}\n{job_log(record['slurm_folder'])}"
    assert f"scancel {job_id}" in record["error"]
    wait_until(lambda: not in_queue(job_id), "the job to leave the queue", 60, every=0.5)


def test_cancel_pending_job_marks_run_cancelled(tmp_path: Path) -> None:
    store = Store(tmp_path)
    create_run(store, tiny_config(), "later")
    # --begin in an hour keeps the job pending: it must be cancelled without ever starting.
    executor = SlurmExecutor(tmp_path, time_minutes=5, extra={"begin": "now+3600"})
    job_id = executor.submit("later")
    assert job_states([job_id]).get(job_id) == "PENDING"
    with pytest.raises(SlurmError, match=f"already submitted as Slurm job {job_id}"):
        executor.submit("later")  # one job per run
    executor.cancel("later")
    record = store.get("later")
    assert record is not None and record["status"] == "cancelled"
    assert "before it started" in record["error"] and job_id in record["error"]
    wait_until(lambda: not in_queue(job_id), "the job to leave the queue", 30, every=0.5)
    executor.cancel("later")  # cancelling a finished run is a no-op
    assert store.get("later")["status"] == "cancelled"


@pytest.mark.slow
def test_reconcile_marks_hard_killed_job_lost(tmp_path: Path) -> None:
    store, executor, job_id = submit_long(tmp_path, "doomed")
    record = wait_until(worker_started(store, "doomed"), "the worker to start", JOB_START_S, every=0.5)
    assert executor.reconcile(store) == []  # running job, running record: nothing to fix

    os.kill(record["pid"], signal.SIGKILL)  # the worker dies without a word (OOM killer, segfault, …)
    wait_until(lambda: not in_queue(job_id), "the job to end", 60, every=0.5)
    assert store.get("doomed")["status"] == "running"  # nobody reported: the record is stale
    assert executor.reconcile(store) == ["doomed"]
    record = store.get("doomed")
    assert record["status"] == "failed"
    assert record["error"].startswith(f"lost: Slurm job {job_id} ended (")
    assert "without the worker reporting" in record["error"]
    assert run_dir(tmp_path, "doomed").read_record()["status"] == "failed"
    assert executor.reconcile(store) == []  # idempotent


def test_reconcile_marks_run_of_forgotten_job_lost(tmp_path: Path) -> None:
    # A job Slurm no longer knows (ended before MinJobAge, or a controller that lost its state).
    store = Store(tmp_path)
    create_run(store, tiny_config(), "ghost")
    assert set_status(store, "ghost", "running", expect=("queued",), executor="slurm", slurm_job_id="99999999")
    assert SlurmExecutor(tmp_path).reconcile() == ["ghost"]
    record = store.get("ghost")
    assert record["status"] == "failed"
    assert record["error"] == "lost: Slurm job 99999999 ended (it left the queue) without the worker reporting"


@pytest.mark.slow
def test_job_started_after_cancel_does_not_run(tmp_path: Path) -> None:
    # The first half of cancel() (marking the queued run cancelled) wins; the job then starts anyway.
    store = Store(tmp_path)
    create_run(store, tiny_config(), "raced")
    job_id = SlurmExecutor(tmp_path, time_minutes=5).submit("raced")
    assert set_status(store, "raced", "cancelled", expect=("queued",), error="cancelled by a test")
    wait_until(lambda: not in_queue(job_id), "the job to end", JOB_START_S, every=0.5)
    record = store.get("raced")
    assert record["status"] == "cancelled" and record["error"] == "cancelled by a test"
    assert record["started"] is None and record["epoch"] == 0  # the worker never ran
    assert "no longer queued" in run_dir(tmp_path, "raced").log_file.read_text()


@pytest.mark.slow
def test_time_limit_warning_fails_run_with_resume_hint(tmp_path: Path) -> None:
    store = Store(tmp_path)
    create_run(store, tiny_config(epochs=200), "late")
    job_id = SlurmExecutor(tmp_path, time_minutes=30).submit("late")
    wait_until(worker_started(store, "late"), "the worker to start", JOB_START_S, every=0.5)
    # What sbatch --signal=USR2@90 makes Slurm send to the job's steps before its time limit.
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    record = wait_until(finished(store, "late"), "the run to stop", RUN_S, every=0.5)  # generous: a busy machine
    assert record["status"] == "failed"
    assert record["error"].startswith("SlurmTimeLimit: ") and "amltui resume late" in record["error"]
    wait_until(lambda: not in_queue(job_id), "the job to leave the queue", 30, every=0.5)
    assert job_states([job_id]).get(job_id) in (None, "FAILED")  # Slurm's view agrees with the record


def test_bad_partition_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path)
    create_run(store, tiny_config(), "nowhere")
    with pytest.raises(SlurmError, match=r"(?i)partition 'no-such-partition'.*invalid partition"):
        SlurmExecutor(tmp_path, partition="no-such-partition").submit("nowhere")
    record = store.get("nowhere")
    assert record is not None and record["status"] == "failed"
    assert "Invalid partition" in record["error"] and record["slurm_job_id"] is None


def test_running_or_done_run_is_not_resubmitted(tmp_path: Path) -> None:
    store = Store(tmp_path)
    create_run(store, tiny_config(), "twice")
    assert set_status(store, "twice", "done", expect=("queued",)) is not None
    with pytest.raises(SlurmError, match="is done"):
        SlurmExecutor(tmp_path).submit("twice")
    assert store.get("twice")["status"] == "done"


def test_parse_time_minutes() -> None:
    assert [parse_time_minutes(t) for t in ("90", "90:30", "1:30:00", "2-0", "2-0:30", "0")] == \
        [90, 91, 90, 2880, 2910, 1]
    with pytest.raises(ValueError, match="time limit"):
        parse_time_minutes("1h")


def slurm_run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`python -m amltui run --executor slurm` of one tiny epoch on synthetic data, plus ``args``."""
    sets = ["arch=small", "train_subset=256", "test_subset=128", "batch_size=64", "pgd_steps=3", "threads=1",
            "eval_ia=false"]
    return subprocess.run(
        [sys.executable, "-m", "amltui", "run", "--executor", "slurm", "--time", "30", "--dataset", "synthetic",
         "--epochs", "1", *args, *[a for s in sets for a in ("--set", s)]],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_cli_run_with_the_slurm_executor(tmp_path: Path) -> None:
    """`amltui run --executor slurm` end to end: submitted, followed live, recorded, listed."""
    out = slurm_run(["--id", "cli-slurm", "--runs-dir", str(tmp_path)], timeout=JOB_START_S + RUN_S)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Slurm job" in out.stdout
    record = Store(tmp_path).get("cli-slurm")
    assert record["status"] == "done" and record["executor"] == "slurm" and record["slurm_job_id"]
    assert "A_orig" in record["metrics"]


@pytest.mark.slow
def test_a_grid_sweep_goes_through_slurm(tmp_path: Path) -> None:
    """`run --grid … --executor slurm`: one job per grid point, each run recorded with its sweep; the sweep table."""
    out = slurm_run(["--grid", "lambda_sa=0.25,0.5", "--sweep", "slurm-grid", "--detach", "--runs-dir",
                     str(tmp_path)], timeout=JOB_START_S)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("Slurm job") == 2 and "sweep slurm-grid: 2 runs" in out.stdout
    store = Store(tmp_path)
    records = store.all()
    assert sorted(r["config"]["lambda_sa"] for r in records) == [0.25, 0.5]
    assert {r["sweep"] for r in records} == {"slurm-grid"} and {r["executor"] for r in records} == {"slurm"}
    for record in records:
        done = wait_until(finished(store, record["id"]), f"{record['id']} to finish",
                          JOB_START_S + 2 * RUN_S, every=0.5)
        assert done["status"] == "done", done.get("error")
    table = subprocess.run([sys.executable, "-m", "amltui", "export", "--sweep", "slurm-grid", "--runs-dir",
                            str(tmp_path)], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert table.returncode == 0, table.stderr
    assert "lambda_sa=0.25" in table.stdout and "lambda_sa=0.5" in table.stdout, table.stdout
