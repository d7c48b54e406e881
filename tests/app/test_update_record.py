"""One way to change a run record (issue 11): store.update_record, a locked read-modify-write of run.json and the
index, and the typed record (records.RunRecord) that validation is derived from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amltui.app.runs.folders import create_run
from amltui.app.runs.records import FIELDS, RULES, STATUSES, RunRecord, Status, inspect, record_problems
from amltui.app.runs.states import change_record, set_status
from amltui.app.runs.store import SKIP, Store, update_record
from core.config import RunConfig
from tests.helpers import ROOT
from tests.record_updater import CANCEL_REASON

UPDATES = 200  # per updater


def _run(tmp_path: Path, run_id: str = "r0") -> Store:
    store = Store(tmp_path)
    create_run(store, RunConfig.resolve("baseline", "quick", seed=0, dataset="synthetic", epochs=1), run_id)
    return store


def _on_disk(store: Store, run_id: str) -> dict:
    return json.loads((store.runs_dir / run_id / "run.json").read_text())


@pytest.mark.slow
def test_concurrent_updaters_of_one_record_lose_no_field(tmp_path: Path) -> None:
    """A worker's progress, a scheduler's status changes and a Slurm submit's fields, written at once by three
    processes (hundreds of updates each, started together): every update of every one is in the record."""
    store = _run(tmp_path)
    set_status(store, "r0", Status.RUNNING, pid=os.getpid())
    roles = ("worker", "scheduler", "slurm")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "record_updater.py"), str(tmp_path), "r0", role,
                               str(UPDATES), str(len(roles))], env=env, stderr=subprocess.PIPE, text=True)
             for role in roles]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    record = store.get("r0")
    for role in roles:
        assert record[f"{role}_seen"] == list(range(UPDATES)), f"{role} lost updates"
    last = UPDATES - 1
    assert record["epoch"] == last and record["last"] == {"epoch": last} and record["gpu_peak_mib"] == last
    assert record["status"] == (Status.RUNNING if last % 2 else Status.STALLED) and record["stall"] == f"note {last}"
    assert record["slurm_job_id"] == str(1000 + last) and record["submitted"]
    assert record["cancel_requested"] == CANCEL_REASON
    assert record["variant"] == "baseline" and record["config"]["epochs"] == 1  # written once, at creation
    assert _on_disk(store, "r0") == record  # run.json and the index agree
    assert not record_problems(record)


@pytest.mark.slow
def test_update_record_forms(tmp_path: Path) -> None:
    store = _run(tmp_path)
    before = _on_disk(store, "r0")
    assert update_record(store, "r0", lambda r: SKIP) is None
    assert _on_disk(store, "r0") == before == store.get("r0")  # SKIP writes nothing
    changed = update_record(tmp_path, "r0", lambda r: r.update(note="in place"))  # a runs folder works too
    assert changed["note"] == "in place" and changed["updated"] != before["updated"]
    replaced = update_record(store, "r0", lambda r: {**r, "tags": ["a"]})
    assert replaced["tags"] == ["a"] and replaced["note"] == "in place"
    assert change_record(store, "r0", sweep="grid-1")["sweep"] == "grid-1"
    assert _on_disk(store, "r0") == store.get("r0")


@pytest.mark.slow
def test_update_record_refuses_bad_changes_and_writes_nothing(tmp_path: Path) -> None:
    store = _run(tmp_path)
    before = _on_disk(store, "r0")
    with pytest.raises(ValueError, match="may not change a run's id"):
        update_record(store, "r0", lambda r: r.update(id="r1"))
    with pytest.raises(ValueError, match="not plain JSON"):
        update_record(store, "r0", lambda r: r.update(note=object()))
    with pytest.raises(RuntimeError, match="boom"):
        update_record(store, "r0", lambda r: (_ for _ in ()).throw(RuntimeError("boom")))
    assert _on_disk(store, "r0") == before == store.get("r0")
    (tmp_path / "r0" / "run.json").write_text("[1]")
    with pytest.raises(ValueError, match="holds a JSON list"):
        update_record(store, "r0", lambda r: None)
    with pytest.raises(FileNotFoundError):
        update_record(store, "gone", lambda r: None)


@pytest.mark.slow
def test_set_status_is_conditional(tmp_path: Path) -> None:
    store = _run(tmp_path)
    assert set_status(store, "r0", Status.RUNNING, expect=(Status.DONE,)) is None
    assert store.get("r0")["status"] == Status.QUEUED
    assert set_status(store, "r0", Status.RUNNING, expect=(Status.QUEUED,), pid=7)["pid"] == 7
    assert set_status(store, "r0", Status.FAILED, worker_pid=8) is None  # another worker's run
    done = set_status(store, "r0", Status.DONE, worker_pid=7)
    assert done["status"] == "done" and done["ended"]


def test_every_declared_field_is_validated_from_its_type() -> None:
    assert set(RULES) == set(RunRecord.__annotations__) - {"id"} and FIELDS[0] == "id"
    assert {"sweep", "tags", "note", "cancel_requested", "submitted", "slurm_job_id"} <= set(RULES)
    good = {"id": "r", "status": "done", "seed": -1, "epoch": 1, "tags": ["x"], "note": None, "sweep": "s",
            "metrics": {"A_orig": 1.0}, "slurm_job_id": "12_3", "created": 5, "not_declared": object()}
    assert record_problems(good) == []
    bad = {"id": "r", "status": "done", "tags": "x", "note": 3, "sweep": ["s"], "epoch": -1, "gpu_peak_mib": "a",
           "slurm_job_id": "--user=root", "metrics": {"A_orig": float("nan")}}
    problems = record_problems(bad)
    assert sorted(problems) == sorted(["tags is 'x', expected a list of text", "note is 3, expected text or null",
                        "sweep is ['s'], expected text or null", "epoch is -1, expected a whole number",
                        "metric A_orig is nan, expected a finite number from 0 to 100",
                        "gpu_peak_mib is 'a', expected a finite number or null",
                        "slurm_job_id is '--user=root', which is not a Slurm job id"])
    safe = inspect(bad)
    assert safe["status"] == Status.DAMAGED and safe["stored_status"] == "done"
    assert (safe["tags"], safe["note"], safe["epoch"], safe["metrics"], safe["slurm_job_id"]) == ([], "3", 0, {},
                                                                                                   None)
    assert record_problems({"id": "r"}) == [f"status is None, expected one of {', '.join(STATUSES)}"]
