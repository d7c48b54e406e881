"""A real worker held in a long quiet phase (AMLTUI_TEST_HOLD, amltui/app/science/safepoint.py): progress.json and
log.txt say which phase runs, and `amltui ls` shows it instead of the epoch (`running 0/2`)."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from amltui.app.executors.local import LocalScheduler
from amltui.app.executors.slots import make_slots
from amltui.app.runs.folders import create_run
from amltui.app.runs.store import Store
from amltui.cli import app
from core.config import RunConfig
from tests.helpers import ROOT, TINY, WAIT, wait_until

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard

runner = CliRunner()


@pytest.mark.parametrize("phase, variant, shown, logged", [
    ("invariance", "ml_sa_ia", "inv train", "phase invariance split=train"),
    ("eval", "baseline", "eval", "phase eval"),
])
def test_a_held_phase_shows_in_ls_progress_and_log(tmp_path, monkeypatch, phase, variant, shown, logged):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the worker runs this checkout
    monkeypatch.setenv("AMLTUI_TEST_HOLD", phase)
    store = Store(tmp_path)
    config = RunConfig.resolve(variant, "quick", seed=0, epochs=1, **{**TINY, "eval_ia": variant != "baseline"})
    run_id = create_run(store, config, run_id="r")["id"]
    monkeypatch.setenv("AMLTUI_TEST_HOLD_DIR", str(tmp_path / run_id))
    scheduler = LocalScheduler(store, [run_id], make_slots([], cpu_slots=1, cores=1))
    try:
        scheduler.step()
        wait_until((tmp_path / run_id / f"hold-{phase}").exists, f"the worker to hold at {phase}")

        progress = json.loads((tmp_path / run_id / "progress.json").read_text())
        assert progress["kind"] == "phase" and progress["phase"]["phase"] == phase, progress
        assert logged in (tmp_path / run_id / "log.txt").read_text()
        listed = runner.invoke(app, ["ls", "--runs-dir", str(tmp_path)], terminal_width=160,
                               env={"COLUMNS": "160"}).output
        line = next(row for row in listed.splitlines() if row.strip().startswith(run_id))
        assert "running" in line and shown in line and "0/1" not in line, listed
    finally:
        runner.invoke(app, ["cancel", run_id, "--runs-dir", str(tmp_path)])
        deadline = time.monotonic() + WAIT
        while scheduler.step() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert store.get(run_id)["status"] == "cancelled"
