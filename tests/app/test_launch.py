"""The local executor and the run lifecycle, with real processes (fake GPU lists where a GPU would be needed)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amltui.app.executors.liveness import lost_reason, reap
from amltui.app.executors.local import LocalScheduler
from amltui.app.executors.slots import make_slots, parse_gpus
from amltui.app.runs.states import set_status
from amltui.app.runs.store import Store
from amltui.cli import app
from tests.helpers import ROOT, fake_spawn, patch, queue, tiny_sets, wait_until

runner = CliRunner()


def trace(runs_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (runs_dir / "trace.jsonl").read_text().splitlines()]


# ---- slots --------------------------------------------------------------------------------------------
def test_gpu_slots_give_each_worker_one_gpu_in_the_users_order(monkeypatch):
    # Bare indices (no inventory to resolve them to UUIDs) keep the meaning they have in the user's device order.
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    slots = make_slots([0, 3], slots_per_gpu=2, cores=8)
    assert [s.name for s in slots] == ["gpu0#0", "gpu0#1", "gpu3#0", "gpu3#1"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "0", "3", "3"]
    assert all(s.env["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST" for s in slots)
    assert all(s.env["AMLTUI_THREADS"] == "2" for s in slots)  # 8 cores / 4 GPU slots
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert all(s.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for s in make_slots([0, 3]))


def test_cpu_slots_hide_gpus_and_split_the_cores():
    slots = make_slots([], cpu_slots=2, cores=8)
    assert [s.name for s in slots] == ["cpu0", "cpu1"]
    assert all(s.env["CUDA_VISIBLE_DEVICES"] == "" and s.env["AMLTUI_THREADS"] == "4" for s in slots)


@pytest.mark.parametrize("text, expected", [("0,1", [0, 1]), (" 2 ", [2]), ("none", []), (None, None), ("", None)])
def test_parse_gpus(text, expected):
    assert parse_gpus(text) == expected


@pytest.mark.parametrize("text", ["a,b", "0,0", "-1"])
def test_parse_gpus_rejects_bad_lists(text):
    with pytest.raises(ValueError, match="--gpus"):
        parse_gpus(text)


# ---- scheduling (fake GPUs, real processes) -----------------------------------------------------------
@pytest.mark.slow
def test_runs_are_handed_out_as_slots_free_up_and_failures_do_not_stop_the_queue(tmp_path):
    store = Store(tmp_path)
    ids = queue(store, 5, fake_seconds=0.6)
    patch(store, "r0", fake_barrier=2)  # r0 and r1 wait for each other: the two slots overlap on any machine
    patch(store, "r1", fake="fail", fake_barrier=2)
    patch(store, "r2", fake="kill")
    scheduler = LocalScheduler(store, ids, make_slots([0, 1]), spawn=fake_spawn)
    scheduler.run(poll=0.05)
    statuses = {r["id"]: r["status"] for r in store.all()}
    assert statuses == {"r0": "done", "r1": "failed", "r2": "failed", "r3": "done", "r4": "done"}
    assert "lost" in store.get("r2")["error"] and "signal 9" in store.get("r2")["error"]
    events = trace(tmp_path)
    starts = [e for e in events if e["event"] == "start"]
    # Handed out in queue order (claim times); two slots let r0 and r1 start together, in either order.
    assert sorted(ids, key=lambda i: store.get(i)["started"]) == ids
    assert {e["run"] for e in starts[:2]} == {"r0", "r1"}
    assert {e["gpu"] for e in starts} == {"0", "1"}
    # Never more than two workers at once (two slots), and never two on the same slot at once.
    timeline = sorted((e["time"], 1 if e["event"] == "start" else -1) for e in events if "time" in e)
    running, peak = 0, 0
    for _, delta in timeline:
        running += delta
        peak = max(peak, running)
    assert peak == 2


@pytest.mark.slow
def test_two_schedulers_of_one_runs_dir_share_its_slots(tmp_path):
    store = Store(tmp_path)
    ids = queue(store, 4, fake_seconds=0.8)
    first = LocalScheduler(store, ids[:2], make_slots([0]), spawn=fake_spawn)
    second = LocalScheduler(store, ids[2:], make_slots([0]), spawn=fake_spawn)
    while first.step() | second.step():
        time.sleep(0.05)
    events = trace(tmp_path)
    timeline = sorted((e["time"], 1 if e["event"] == "start" else -1) for e in events)
    running = peak = 0
    for _, delta in timeline:
        running += delta
        peak = max(peak, running)
    assert peak == 1  # one slot (gpu0) in all: never two workers at once
    assert {r["status"] for r in store.all()} == {"done"}


@pytest.mark.slow
def test_a_run_cancelled_while_queued_is_skipped(tmp_path):
    store = Store(tmp_path)
    ids = queue(store, 3)
    set_status(store, "r1", "cancelled", expect=("queued",))
    LocalScheduler(store, ids, make_slots([7]), spawn=fake_spawn).run(poll=0.05)
    assert [e["run"] for e in trace(tmp_path) if e["event"] == "start"] == ["r0", "r2"]
    assert store.get("r1")["status"] == "cancelled"


@pytest.mark.slow
def test_cancel_all_stops_workers_and_cancels_the_queue(tmp_path):
    store = Store(tmp_path)
    ids = queue(store, 3, fake_seconds=60)
    scheduler = LocalScheduler(store, ids, make_slots([0]), spawn=fake_spawn)
    scheduler.step()
    wait_until(lambda: (tmp_path / "trace.jsonl").exists(), "the first worker to start", 120)
    scheduler.cancel_all(timeout=5)
    assert {r["id"]: r["status"] for r in store.all()} == {"r0": "cancelled", "r1": "cancelled", "r2": "cancelled"}


# ---- liveness -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_running_record_with_a_dead_pid_or_a_stale_heartbeat_is_lost(tmp_path):
    store = Store(tmp_path)
    (run_id,) = queue(store, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    set_status(store, run_id, "running", pid=dead.pid, host=socket.gethostname(), executor="local")
    assert "ended without reporting" in lost_reason(tmp_path, store.get(run_id))
    # On another host only the heartbeat can tell.
    set_status(store, run_id, "running", pid=dead.pid, host="elsewhere")
    beat = tmp_path / run_id / "heartbeat"
    beat.touch()
    assert lost_reason(tmp_path, store.get(run_id)) is None
    old = time.time() - 120
    os.utime(beat, (old, old))
    assert "no heartbeat" in lost_reason(tmp_path, store.get(run_id))
    assert reap(store) == [run_id] and store.get(run_id)["status"] == "failed"
    assert json.loads((tmp_path / run_id / "run.json").read_text())["status"] == "failed"  # the ground truth too


# ---- real training workers ----------------------------------------------------------------------------
def amltui(*args: str, runs: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AMLTUI_RUNS_DIR": str(runs), "PYTHONPATH": str(ROOT), **extra_env}
    return subprocess.run([sys.executable, "-m", "amltui", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=300)


def held_run(runs: Path, phase: str, timeout: float = 240) -> str:
    """The id of a run whose worker holds at ``phase`` (AMLTUI_TEST_HOLD; amltui.app.science.safepoint)."""
    found = wait_until(lambda: sorted(runs.glob(f"*/hold-{phase}")), f"a worker holding at {phase}", timeout)
    return found[0].parent.name


@pytest.mark.slow
def test_sigkilled_worker_is_marked_lost_the_queue_goes_on_and_resume_finishes_it(tmp_path):
    # Each worker holds after its first epoch (its checkpoint in place) until it is cancelled: what happens to
    # it never depends on how fast this machine trains.
    sets = tiny_sets(train_subset=1024)
    started = amltui("run", "--detach", "--variants", "baseline", "--seeds", "0,1", "--dataset", "synthetic",
                     "--epochs", "40", "--cpu-slots", "1", *sets, runs=tmp_path, AMLTUI_TEST_HOLD="epoch")
    assert started.returncode == 0, started.stderr
    store = Store(tmp_path)
    first = held_run(tmp_path, "epoch")
    pid = store.get(first)["pid"]
    assert pid and (tmp_path / first / "checkpoint.pt").exists()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: store.get(first)["status"] == "failed", "the killed run to be marked failed", 120)
    assert "lost" in store.get(first)["error"]
    other = next(r["id"] for r in store.all() if r["id"] != first)
    wait_until(lambda: (tmp_path / other / "hold-epoch").exists(), "the queue to go on", 240)
    assert store.get(other)["status"] == "running"
    cancelled = amltui("cancel", other, runs=tmp_path)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    wait_until(lambda: store.get(other)["status"] == "cancelled", "the cancelled run", 120)
    assert "stopped while training" in store.get(other)["error"]

    listed = json.loads(amltui("ls", "--json", runs=tmp_path).stdout)
    assert {r["id"]: r["status"] for r in listed} == {first: "failed", other: "cancelled"}


@pytest.mark.slow
def test_resume_after_sigkill_finishes_from_the_checkpoint(tmp_path):
    sets = tiny_sets(train_subset=1024)
    started = amltui("run", "--detach", "--id", "k", "--dataset", "synthetic", "--epochs", "3", *sets, runs=tmp_path,
                     AMLTUI_TEST_HOLD="epoch")
    assert started.returncode == 0, started.stderr
    store = Store(tmp_path)
    held_run(tmp_path, "epoch")  # epoch 1 done and checkpointed; the worker waits
    pid = store.get("k")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: store.get("k")["status"] == "failed", "the lost run", 120)
    resumed = amltui("resume", "k", runs=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = store.get("k")
    assert record["status"] == "done" and record["epoch"] == 3 and "A_orig" in record["metrics"]
    log = (tmp_path / "k" / "log.txt").read_text()
    assert "resuming" in log and "after epoch 1" in log


def test_logs_rm_and_cancel_of_a_queued_run(tmp_path):
    store = Store(tmp_path)
    (run_id,) = queue(store, 1)
    (tmp_path / run_id / "log.txt").write_text("line one\nline two\n")
    out = runner.invoke(app, ["logs", run_id, "--runs-dir", str(tmp_path)])
    assert out.exit_code == 0 and "line two" in out.output
    out = runner.invoke(app, ["rm", run_id, "--yes", "--runs-dir", str(tmp_path)])
    assert out.exit_code == 2 and "cancel" in out.output  # queued: refuse to delete
    out = runner.invoke(app, ["cancel", run_id, "--runs-dir", str(tmp_path)])
    assert out.exit_code == 0 and "cancelled (was queued)" in out.output
    out = runner.invoke(app, ["rm", run_id, "--yes", "--runs-dir", str(tmp_path)])
    assert out.exit_code == 0
    assert not (tmp_path / run_id).exists() and store.get(run_id) is None
