"""Cancelling a run at every phase of its life, with real workers, real signals and real records.

Each phase is hit on purpose: AMLTUI_TEST_HOLD=<phase> makes the worker write ``<run>/hold-<phase>`` and wait
there until it is cancelled (amltui.app.science.safepoint); nothing here sleeps and hopes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from amltui.app.executors.control import cancel_run
from amltui.app.executors.liveness import reap
from amltui.app.executors.local import LocalScheduler
from amltui.app.executors.slots import make_slots
from amltui.app.runs.folders import create_run, run_dir
from amltui.app.runs.states import set_status
from amltui.app.runs.store import Store
from amltui.cli import app
from core.config import RunConfig
from tests.helpers import ROOT, TINY, WAIT, drive, tiny_sets, wait_until

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard

runner = CliRunner()


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the workers run this checkout
    return monkeypatch


def new_run(store: Store, run_id: str, variant: str = "baseline", **fields) -> str:
    config = RunConfig.resolve(variant, "quick", seed=0, epochs=fields.pop("epochs", 50), **{**TINY, **fields})
    return create_run(store, config, run_id=run_id)["id"]


def held(tmp_path: Path, run_id: str, phase: str) -> Path:
    marker = tmp_path / run_id / f"hold-{phase}"
    wait_until(marker.exists, f"the worker to hold at {phase}")
    return marker


def no_temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


# ---- every phase ----------------------------------------------------------------------------------------
PHASES = [
    # (hold at, run fields, what the recorded reason says)
    ("spawn", {}, "before it could record it"),  # no signal handler yet: SIGTERM kills it outright
    ("import", {}, "stopped while importing"),
    ("data", {}, "stopped while loading data"),
    ("invariance", {"variant": "ml_sa_ia"}, "stopped while making invariance sets"),
    ("train", {}, "stopped while training"),
    ("checkpoint", {}, "stopped while writing a checkpoint"),
    ("epoch", {}, "stopped while training"),
    ("eval", {"epochs": 1}, "stopped while evaluating"),
]


@pytest.mark.parametrize("phase, fields, says", PHASES, ids=[p[0] for p in PHASES])
def test_a_cancel_in_any_phase_ends_cancelled(tmp_path, env, phase, fields, says):
    store = Store(tmp_path)
    run_id = new_run(store, "r", **dict(fields))
    env.setenv("AMLTUI_TEST_HOLD", phase)
    env.setenv("AMLTUI_TEST_HOLD_DIR", str(tmp_path / run_id))
    scheduler = LocalScheduler(store, [run_id], make_slots([], cpu_slots=1, cores=1))
    scheduler.step()
    held(tmp_path, run_id, phase)

    out = runner.invoke(app, ["cancel", run_id, "--runs-dir", str(tmp_path)])
    assert out.exit_code == 0 and "SIGTERM" in out.output, out.output
    drive(scheduler)

    record = store.get(run_id)
    assert record["status"] == "cancelled", record
    assert record["error"].startswith("cancelled with `amltui cancel`") and says in record["error"], record["error"]
    assert record["pid"] is None and record["ended"] and record["traceback"] is None
    assert run_dir(tmp_path, run_id).read_record()["status"] == "cancelled"  # the run folder agrees
    assert no_temp_files(tmp_path / run_id) == []
    worker_out = (tmp_path / run_id / "worker.out").read_text()
    assert "Traceback" not in worker_out, worker_out
    checkpoint = tmp_path / run_id / "checkpoint.pt"
    if phase in ("checkpoint", "epoch"):  # the epoch that finished is kept, and loads
        state = torch.load(checkpoint, weights_only=True)
        assert state["epoch"] == 1 and record["epoch"] == 1
    else:
        assert not checkpoint.exists() or phase == "eval"


def test_cancel_while_the_record_has_no_pid_is_not_dropped(tmp_path, env):
    # A scheduler has claimed the run but not yet recorded its worker's pid: the cancel cannot be signalled.
    store = Store(tmp_path)
    run_id = new_run(store, "r")
    assert set_status(store, run_id, "running", expect=("queued",), executor="local", pid=None, host=None)
    out = runner.invoke(app, ["cancel", run_id, "--runs-dir", str(tmp_path)])
    assert out.exit_code == 0 and "cancel recorded" in out.output, out.output
    assert store.get(run_id)["cancel_requested"]
    worker = subprocess.run([sys.executable, "-m", "amltui.app.science.worker", "--runs-dir", str(tmp_path), run_id],
                            capture_output=True, text=True, timeout=WAIT)
    assert worker.returncode == 130, worker.stdout + worker.stderr
    record = store.get(run_id)
    assert record["status"] == "cancelled" and "stopped while starting" in record["error"]


def test_fifty_immediate_cancels_all_end_cancelled(tmp_path, env):
    """Cancel right after the scheduler starts each worker: whatever the worker is doing then (not started,
    no handler yet, loading modules, reading its record), the run must end cancelled."""
    store = Store(tmp_path)
    ids = [new_run(store, f"c{i:02d}") for i in range(50)]
    outcomes = {}
    for i, run_id in enumerate(ids):
        scheduler = LocalScheduler(store, [run_id], make_slots([], cpu_slots=1, cores=1))
        scheduler.step()
        # Vary the moment a little, by steps of work rather than time: every few runs, wait for the worker to
        # hold its lock (it is then past its start-up).
        if i % 5 == 4:
            lock = tmp_path / run_id / "worker.lock"
            wait_until(lock.exists, "the worker to take its lock")
        cancel_run(store, store.get(run_id))
        drive(scheduler)
        outcomes[run_id] = store.get(run_id)
    statuses = {r["status"] for r in outcomes.values()}
    assert statuses == {"cancelled"}, {k: (r["status"], r["error"]) for k, r in outcomes.items()
                                        if r["status"] != "cancelled"}
    assert all(r["error"] and "cancel" in r["error"] for r in outcomes.values())


def test_a_worker_killed_with_a_cancel_pending_is_cancelled_not_lost(tmp_path, env):
    # No scheduler watching: the liveness check alone settles the run (e.g. the detached scheduler is gone).
    store = Store(tmp_path)
    run_id = new_run(store, "r")
    env.setenv("AMLTUI_TEST_HOLD", "train")
    scheduler = LocalScheduler(store, [run_id], make_slots([], cpu_slots=1, cores=1))
    scheduler.step()
    held(tmp_path, run_id, "train")
    (_, proc), = scheduler.active.values()
    env.delenv("AMLTUI_TEST_HOLD")
    from amltui.app.runs.states import request_cancel

    assert request_cancel(store, run_id, "cancelled by a test")
    proc.kill()  # dies before it can record anything
    proc.wait()
    assert reap(store) == [run_id]
    record = store.get(run_id)
    assert record["status"] == "cancelled" and record["error"].startswith("cancelled by a test")


# ---- Ctrl-C in a foreground run -------------------------------------------------------------------------
@pytest.mark.parametrize("phase", ["spawn", "import", "train"])
def test_ctrl_c_in_a_foreground_run_cancels_at_any_phase(tmp_path, phase):
    sets = tiny_sets()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AMLTUI_TEST_HOLD": phase,
           "AMLTUI_TEST_HOLD_DIR": str(tmp_path / "fg")}
    cli = subprocess.Popen([sys.executable, "-m", "amltui", "run", "--id", "fg", "--variant", "baseline",
                            "--dataset", "synthetic", "--epochs", "50", "--cpu-slots", "1", "--runs-dir",
                            str(tmp_path), *sets], env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        held(tmp_path, "fg", phase)
        cli.send_signal(signal.SIGINT)  # what Ctrl-C sends (the workers run in their own session)
        out, err = cli.communicate(timeout=WAIT)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 130, out + err
    assert "Traceback" not in err, err
    record = Store(tmp_path).get("fg")
    assert record["status"] == "cancelled", record
    assert "Ctrl-C" in record["error"], record["error"]
    assert list((tmp_path / ".schedulers").glob("*.json")) == []  # the scheduler let go of its claim
