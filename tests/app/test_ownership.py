"""One worker per run folder (worker.lock), paused workers shown `stalled`, queued runs of a dead scheduler shown
`orphaned`, and a progress display that cannot stop the runs. Real processes, real signals, real locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amltui.app.executors.liveness import heartbeat_age, reap
from amltui.app.executors.local import LocalScheduler, slot_lock, start_detached
from amltui.app.executors.slots import Slot, make_slots
from amltui.app.runs.folders import create_run
from amltui.app.runs.progress import describe
from amltui.app.runs.store import Store
from amltui.cli import app
from core.config import RunConfig
from tests.helpers import ROOT, TINY, WAIT, drive, wait_until

runner = CliRunner()


def new_run(store: Store, run_id: str, epochs: int = 50) -> str:
    return create_run(store, RunConfig.resolve("baseline", "quick", seed=0, epochs=epochs, **TINY), run_id=run_id)["id"]


def cli(*args: str, runs: Path):
    return runner.invoke(app, [*args, "--runs-dir", str(runs)])


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def held_worker(tmp_path, monkeypatch):
    """A real worker of run "r", holding in its training phase (AMLTUI_TEST_HOLD) until it is cancelled."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("AMLTUI_TEST_HOLD", "train")
    store = Store(tmp_path)
    new_run(store, "r")
    scheduler = LocalScheduler(store, ["r"], make_slots([], cpu_slots=1, cores=1))
    scheduler.step()
    wait_until((tmp_path / "r" / "hold-train").exists, "the worker to hold in training")
    (_, proc), = scheduler.active.values()
    yield store, scheduler, proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_second_worker_on_the_same_run_refuses_to_start(tmp_path, held_worker):
    store, scheduler, proc = held_worker
    before = store.get("r")
    second = subprocess.run([sys.executable, "-m", "amltui.app.science.worker", "--runs-dir", str(tmp_path),
                             "--resume", "r"], capture_output=True, text=True, timeout=WAIT)
    assert second.returncode == 3, second.stdout + second.stderr
    assert f"worker pid {proc.pid} still owns" in second.stderr and "not starting a second worker" in second.stderr
    after = store.get("r")
    assert after["status"] == "running" and after["pid"] == before["pid"] == proc.pid  # the record is untouched
    assert proc.poll() is None  # the owner goes on
    assert cli("cancel", "r", runs=tmp_path).exit_code == 0
    drive(scheduler)
    assert store.get("r")["status"] == "cancelled"


@pytest.mark.slow
def test_a_paused_worker_is_stalled_not_lost_and_resume_refuses_it(tmp_path, held_worker):
    store, scheduler, proc = held_worker
    os.kill(proc.pid, signal.SIGSTOP)
    wait_until(lambda: process_state(proc.pid) == "T", "the worker to stop")
    old = time.time() - 600  # as if it had been paused for ten minutes (it cannot beat while stopped)
    os.utime(tmp_path / "r" / "heartbeat", (old, old))

    assert reap(store) == ["r"]
    record = store.get("r")
    assert record["status"] == "stalled" and "paused or hung" in record["stall"]
    listed = json.loads(cli("ls", "--json", runs=tmp_path).output)
    assert [r["status"] for r in listed] == ["stalled"]
    out = cli("resume", "r", runs=tmp_path)
    assert out.exit_code == 2 and "stalled" in out.output and "kill -CONT" in out.output, out.output
    out = cli("rm", "r", "--yes", runs=tmp_path)
    assert out.exit_code == 2 and (tmp_path / "r").exists()
    assert reap(store) == [] and store.get("r")["status"] == "stalled"  # still not lost

    os.kill(proc.pid, signal.SIGCONT)  # it wakes up and beats again
    wait_until(lambda: (heartbeat_age(tmp_path, "r") or 1e9) < 60, "a fresh heartbeat")
    assert reap(store) == ["r"] and store.get("r")["status"] == "running"

    # Paused again, then cancelled: the cancel wakes it up so that it can stop cleanly.
    os.kill(proc.pid, signal.SIGSTOP)
    wait_until(lambda: process_state(proc.pid) == "T", "the worker to stop")
    os.utime(tmp_path / "r" / "heartbeat", (old, old))
    reap(store)
    assert store.get("r")["status"] == "stalled"
    out = cli("cancel", "r", runs=tmp_path)
    assert out.exit_code == 0 and "SIGTERM" in out.output, out.output
    drive(scheduler)
    record = store.get("r")
    assert record["status"] == "cancelled" and "stopped while training" in record["error"], record


@pytest.mark.slow
def test_queued_runs_of_a_dead_scheduler_are_orphaned_and_resume_starts_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    store = Store(tmp_path)
    ids = [new_run(store, "o0", epochs=1), new_run(store, "o1", epochs=1)]
    busy = slot_lock(tmp_path, Slot("cpu0"))  # the scheduler's only slot is taken: it can start nothing
    assert busy is not None
    scheduler = start_detached(tmp_path, ids, [], 1, 1)
    try:
        wait_until(lambda: "run(s) on" in (tmp_path / "scheduler.log").read_text(), "the scheduler to start")
        assert reap(store) == []  # its scheduler lives: queued, not orphaned
        out = cli("resume", "o0", runs=tmp_path)
        assert out.exit_code == 2 and "queued" in out.output
    finally:
        scheduler.kill()  # kill -9: no chance to clean up
        scheduler.wait()
    busy.release()

    assert sorted(reap(store)) == ids
    for run_id in ids:
        record = store.get(run_id)
        assert record["status"] == "orphaned", record
        assert f"scheduler (pid {scheduler.pid}" in record["error"] and f"amltui resume {run_id}" in record["error"]
    listed = json.loads(cli("ls", "--json", runs=tmp_path).output)
    assert {r["id"]: r["status"] for r in listed} == {"o0": "orphaned", "o1": "orphaned"}
    assert list((tmp_path / ".schedulers").glob("*.json")) == []  # the dead claim is gone

    resumed = subprocess.run([sys.executable, "-m", "amltui", "resume", "o0", "--gpus", "none", "--runs-dir",
                              str(tmp_path)], capture_output=True, text=True, timeout=WAIT, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = store.get("o0")
    assert record["status"] == "done" and record["epoch"] == 1 and not record.get("resumes")
    out = cli("cancel", "o1", runs=tmp_path)
    assert out.exit_code == 0 and "cancelled (was orphaned)" in out.output
    assert store.get("o1")["status"] == "cancelled"


# ---- the foreground display --------------------------------------------------------------------------------
@pytest.mark.parametrize("progress", [{"kind": "batch"}, {"kind": "epoch", "epoch": "x"}, {"kind": "eval", "eval": 3},
                                      {"kind": "batch", "batch": {"epoch": 1}}])
def test_a_malformed_progress_file_is_described_not_raised(progress):
    text, done, total = describe({"id": "r", "status": "running"}, progress)
    assert text == "running (progress unreadable)" and (done, total) == (0, 1)


@pytest.mark.parametrize("progress", [[], "text", None, 3])
def test_a_progress_file_that_is_not_an_object_counts_as_none(progress):
    assert describe({"id": "r", "status": "running"}, progress) == ("starting", 0, 1)


@pytest.mark.slow
def test_a_failing_display_never_stops_the_runs(tmp_path, monkeypatch):
    from tests.helpers import fake_spawn, queue

    store = Store(tmp_path)
    ids = queue(store, 2, fake_seconds=0.1)
    scheduler = LocalScheduler(store, ids, make_slots([0]), spawn=fake_spawn)
    calls = []

    def broken_display() -> None:
        calls.append(1)
        raise KeyError("batch")

    assert scheduler.run(poll=0.05, on_tick=broken_display) is True
    assert len(calls) > 1 and scheduler.display_error == "KeyError: 'batch'"
    assert {r["status"] for r in store.all()} == {"done"}
    assert list((tmp_path / ".schedulers").glob("*.json")) == []
