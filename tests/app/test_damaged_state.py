"""Issue 12: damaged, missing or hostile state in a runs folder never breaks a command or hides a run.

Each test reproduces one of the hostile cases that ended in a raw traceback (or worse) before the fix.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from amltui.app.executors.local import LocalScheduler
from amltui.app.executors.slots import Slot
from amltui.app.fsutil import atomic_write_bytes
from amltui.app.runs.folders import run_dir
from amltui.app.runs.records import inspect
from amltui.app.runs.store import SCHEMA_VERSION, Store, delete_record, validate_run_id
from tests.helpers import ROOT, assert_clean, dead_pid, edit_record, invoke, make_runs


def ls_json(runs: Path) -> dict[str, dict]:
    result = invoke("ls", "--json", "--runs-dir", runs)
    assert_clean(result, 0)
    start = result.output.index("[")
    end = result.output.rindex("]") + 1
    return {r["id"]: r for r in json.loads(result.output[start:end])}


# ---- a run folder deleted or garbled under a live index ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["delete", "garble"])
def test_a_deleted_or_garbled_running_run_is_shown_damaged_and_everything_else_works(tmp_path: Path,
                                                                                      damage: str) -> None:
    store = make_runs(tmp_path)
    edit_record(store, "b0", status="running", pid=dead_pid(), host=os.uname().nodename, executor="local")
    if damage == "delete":
        shutil.rmtree(tmp_path / "b0")
    else:
        (tmp_path / "b0" / "run.json").write_bytes(b'{"id": "b0", "stat')
    out = assert_clean(invoke("ls", "--runs-dir", tmp_path), 0)
    assert "damaged" in out and "b1" in out and "b2" in out
    assert ("missing" if damage == "delete" else "unreadable") in out
    listed = ls_json(tmp_path)
    assert listed["b0"]["status"] == "damaged" and listed["b1"]["status"] == "done"
    assert "b0" in listed and listed["b0"]["damaged"]
    out = assert_clean(invoke("show", "b0", "--runs-dir", tmp_path), 0)
    assert "damaged" in out
    assert_clean(invoke("cancel", "--all", "--runs-dir", tmp_path))
    report = assert_clean(invoke("store", "rebuild", "--runs-dir", tmp_path), 0)
    assert "b0" in report  # kept (marked damaged) or skipped, but said
    after = ls_json(tmp_path)
    assert after["b0"]["status"] in ("damaged", "cancelled") and after["b1"]["status"] == "done"
    assert_clean(invoke("rm", "b0", "--yes", "--runs-dir", tmp_path), 0)
    assert set(ls_json(tmp_path)) == {"b1", "b2"}
    assert not (tmp_path / "b0").exists()


def test_cancel_and_resume_of_runs_whose_folder_is_gone(tmp_path: Path) -> None:
    store = make_runs(tmp_path)
    edit_record(store, "b0", status="failed", error="boom")
    edit_record(store, "b1", status="queued")
    shutil.rmtree(tmp_path / "b0")
    shutil.rmtree(tmp_path / "b1")
    out = assert_clean(invoke("resume", "b0", "--runs-dir", tmp_path), 2)
    assert "damaged" in out and "missing" in out and "amltui rm b0" in out
    out = assert_clean(invoke("cancel", "b1", "--runs-dir", tmp_path), 0)
    assert "b1" in out and "cancelled" in out
    assert Store(tmp_path).get("b1")["status"] == "cancelled"
    assert_clean(invoke("cancel", "--all", "--runs-dir", tmp_path), 0)
    assert Store(tmp_path).get("b2")["status"] == "done"  # untouched


@pytest.mark.slow
def test_the_scheduler_survives_a_run_whose_folder_vanished(tmp_path: Path) -> None:
    store = make_runs(tmp_path, seeds=(0, 1, 2))
    for run_id in ("b0", "b1", "b2"):
        edit_record(store, run_id, status="queued", metrics={}, fake="done", fake_seconds=0.05)
    shutil.rmtree(tmp_path / "b1")  # deleted while queued

    def spawn(run_id: str, slot: Slot, runs_dir: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_worker.py"), str(runs_dir), run_id],
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, pass_fds=pass_fds)

    scheduler = LocalScheduler(store, ["b0", "b1", "b2"], [Slot("cpu0")], spawn=spawn)
    scheduler.run(poll=0.05)  # before the fix: FileNotFoundError out of step()
    assert store.get("b0")["status"] == "done" and store.get("b2")["status"] == "done"
    assert inspect(store.get("b1"), tmp_path)["status"] == "damaged"


# ---- wrong field types in valid JSON -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("changes", [{"epoch": [1]}, {"metrics": "abc"}, {"seed": "zero"},
                                     {"metrics": {"A_orig": float("nan"), "A_SA": 40.0}},
                                     {"status": "[/x]"}, {"pid": "abc", "status": "running"}])
def test_mistyped_fields_mark_only_that_run(tmp_path: Path, changes: dict) -> None:
    store = make_runs(tmp_path)
    edit_record(store, "b0", folder_too=False, **changes)
    out = assert_clean(invoke("ls", "--runs-dir", tmp_path), 0)
    assert "damaged" in out and "b1" in out
    assert ls_json(tmp_path)["b0"]["status"] == "damaged"
    assert "damaged" in assert_clean(invoke("show", "b0", "--runs-dir", tmp_path), 0)
    out = assert_clean(invoke("export", "--runs-dir", tmp_path), 0)
    assert "b0: damaged (left out of the table)" in out and "(n=2;" in out and "(n=3" not in out
    # The run folder still holds the good record: a rebuild repairs the index.
    assert_clean(invoke("store", "rebuild", "--runs-dir", tmp_path), 0)
    assert ls_json(tmp_path)["b0"]["status"] == "done"


def test_nan_metric_is_never_averaged_into_the_export(tmp_path: Path) -> None:
    store = make_runs(tmp_path, seeds=(0, 1))
    edit_record(store, "b0", metrics={"A_orig": math.nan, "A_SA": 1.0})
    out = assert_clean(invoke("export", "--runs-dir", tmp_path, "--format", "csv"), 0)
    assert "b0: damaged (left out of the table): metric A_orig is nan" in out
    assert "91.00" in out or "91.0" in out  # b1 alone


def test_rebuild_validates_fields_and_marks_bad_records(tmp_path: Path) -> None:
    store = make_runs(tmp_path)
    edit_record(store, "b0", seed="zero")  # in run.json itself
    out = assert_clean(invoke("store", "rebuild", "--runs-dir", tmp_path), 0)
    assert "marked damaged b0: seed is 'zero'" in out
    assert ls_json(tmp_path)["b0"]["status"] == "damaged"
    assert_clean(invoke("export", "--runs-dir", tmp_path), 0)
    assert_clean(invoke("ls", "--runs-dir", tmp_path), 0)


def test_a_store_from_a_newer_schema_is_a_clear_error_in_rebuild(tmp_path: Path) -> None:
    make_runs(tmp_path)
    data = json.loads((tmp_path / "store.json").read_text())
    data["meta"] = {"1": {"schema_version": 99}}
    (tmp_path / "store.json").write_text(json.dumps(data))
    before = (tmp_path / "store.json").read_bytes()
    out = assert_clean(invoke("store", "rebuild", "--runs-dir", tmp_path), 2)
    assert "schema version 99" in out and str(SCHEMA_VERSION) in out
    assert (tmp_path / "store.json").read_bytes() == before


@pytest.mark.parametrize("damage", ["null", "utf8", "folder"])
def test_show_survives_a_damaged_metrics_file(tmp_path: Path, damage: str) -> None:
    make_runs(tmp_path)
    metrics = tmp_path / "b0" / "metrics.jsonl"
    good = json.dumps({"kind": "epoch", "epoch": 1, "train_loss": 0.5}) + "\n"
    if damage == "null":
        metrics.write_text(good + "null\n[1, 2]\n")
    elif damage == "utf8":
        metrics.write_bytes(good.encode() + b'{"kind": "epoch", "epoch": 2, "note": "\xff\xfe"}\n')
    else:
        metrics.mkdir()
    out = assert_clean(invoke("show", "b0", "--runs-dir", tmp_path), 0)
    assert "b0" in out
    if damage == "folder":
        assert "metrics.jsonl unreadable" in out
    else:
        assert "0.5" in out


# ---- reserved names and empty ids ----------------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["store.json", "scheduler.log", "cache", "reports", "slurm", "locks",
                                    "store.json.lock", "results-1.md", ""])
def test_reserved_or_empty_run_ids_are_refused_before_anything_is_written(tmp_path: Path, run_id: str) -> None:
    out = assert_clean(invoke("run", "--id", run_id, "--dataset", "synthetic", "--runs-dir", tmp_path), 2)
    assert "--id" in out
    assert [p.name for p in tmp_path.iterdir() if p.name != "store.json.lock"] == []
    with pytest.raises(ValueError):
        validate_run_id(run_id)


def test_a_folder_named_store_json_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "store.json").mkdir()  # left by an older amltui that accepted `--id store.json`
    out = assert_clean(invoke("ls", "--runs-dir", tmp_path), 2)
    assert "is a folder, not the run index" in out


# ---- silent emptiness ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["empty", "missing"])
def test_run_folders_without_an_index_give_a_rebuild_hint(tmp_path: Path, how: str) -> None:
    make_runs(tmp_path)
    if how == "empty":
        (tmp_path / "store.json").write_text("")
    else:
        (tmp_path / "store.json").unlink()
    out = assert_clean(invoke("ls", "--runs-dir", tmp_path), 0)
    assert "3 run folder(s)" in out and "amltui store rebuild" in out
    out = assert_clean(invoke("export", "--runs-dir", tmp_path), 0)
    assert "amltui store rebuild" in out


def test_a_run_folder_without_a_record_is_named_by_export(tmp_path: Path) -> None:
    store = make_runs(tmp_path)
    delete_record(store, "b2")
    out = assert_clean(invoke("export", "--runs-dir", tmp_path), 0)
    assert "not in the index (b2)" in out


# ---- bad output paths --------------------------------------------------------------------------------------


def test_export_out_to_a_folder_or_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_runs(runs)
    (tmp_path / "adir").mkdir()
    out = assert_clean(invoke("export", "--out", tmp_path / "adir", "--runs-dir", runs), 2)
    assert "is a folder" in out
    (tmp_path / "afile").write_text("x")
    out = assert_clean(invoke("export", "--out", tmp_path / "afile" / "x.md", "--runs-dir", runs), 2)
    assert "cannot write --out" in out
    assert (tmp_path / "afile").read_text() == "x"


# ---- security ----------------------------------------------------------------------------------------------


def test_rm_refuses_a_symlinked_run_folder_and_rebuild_skips_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    store = make_runs(runs)
    elsewhere = tmp_path / "precious"
    shutil.move(runs / "b0", elsewhere)
    (runs / "b0").symlink_to(elsewhere)
    out = assert_clean(invoke("rm", "b0", "--yes", "--runs-dir", runs), 2)
    assert "symbolic link" in out
    assert (runs / "b0").is_symlink() and (elsewhere / "run.json").is_file()
    report = store.rebuild()
    assert any(p.name == "b0" and "symbolic link" in why for p, why in report.skipped)


def test_a_forged_slurm_job_id_never_reaches_scancel(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    store = make_runs(runs)
    edit_record(store, "b0", status="running", executor="slurm", slurm_job_id="--user=root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    for tool in ("scancel", "scontrol", "sacct", "squeue"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {calls}\n")
        script.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = assert_clean(invoke("cancel", "b0", "--runs-dir", runs, env=env), 1)
    assert "not a Slurm job id" in out and "refusing" in out
    assert_clean(invoke("cancel", "--all", "--runs-dir", runs, env=env))
    from amltui.app.executors.slurm import SlurmExecutor

    old_path = os.environ["PATH"]
    os.environ["PATH"] = env["PATH"]
    try:
        SlurmExecutor(runs).reconcile(store)
    finally:
        os.environ["PATH"] = old_path
    assert not calls.exists() or "--user" not in calls.read_text()


@pytest.mark.slow
def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    code = ("import os, sys; os.umask(0o007); from pathlib import Path; from amltui.app.fsutil import "
            "atomic_write_bytes; atomic_write_bytes(Path(sys.argv[1]), b'x')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "group.json")], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert stat.S_IMODE((tmp_path / "group.json").stat().st_mode) == 0o660
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write_bytes(tmp_path / "here.json", b"x")  # this process's umask, read at import
    assert stat.S_IMODE((tmp_path / "here.json").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "here.json").stat().st_mode) != 0o600 or mask == 0o066


def test_record_checks_accept_what_amltui_writes(tmp_path: Path) -> None:
    store = make_runs(tmp_path)
    for record in store.all():
        assert inspect(record, tmp_path) is record  # nothing to flag: returned as is
    assert run_dir(tmp_path, "b0").record_file.is_file()


def test_rm_refuses_a_damaged_run_whose_worker_is_alive(tmp_path: Path) -> None:
    store = make_runs(tmp_path)
    edit_record(store, "b0", folder_too=False, status="running", metrics="abc", pid=os.getpid(),
                host=socket.gethostname(), executor="local")
    out = assert_clean(invoke("rm", "b0", "--yes", "--runs-dir", tmp_path), 2)
    assert "still queued, running or stalled" in out
    assert (tmp_path / "b0" / "run.json").is_file()


@pytest.mark.slow
def test_invariance_cache_files_follow_the_umask_too(tmp_path: Path) -> None:
    code = ("import os, sys; os.umask(0o002); from pathlib import Path; "
            "from core.fsio import atomic_write; "  # the invariance cache writes through core/fsio.py
            "atomic_write(Path(sys.argv[1]), lambda f: f.write(b'x'))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "manifest.json")], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert stat.S_IMODE((tmp_path / "manifest.json").stat().st_mode) == 0o664


@pytest.mark.parametrize("progress", [{"kind": "batch"}, {"kind": "batch", "batch": {"steps": "x"}},
                                      {"kind": "epoch", "epoch": [1]}, {"kind": "eval", "eval": None}])
def test_live_progress_lines_survive_a_malformed_progress_file(tmp_path: Path, progress: dict) -> None:
    import io

    from rich.console import Console

    from amltui.app.runs.progress import LiveRuns, describe

    text, done, total = describe({"status": "running"}, progress)
    assert text == "running (progress unreadable)" and (done, total) == (0, 1)
    store = make_runs(tmp_path)
    edit_record(store, "b0", status="running", pid=os.getpid(), host=socket.gethostname(), metrics={})
    edit_record(store, "b1", folder_too=False, metrics={"A_orig": "[/x]"}, error="[/x] stored")
    (tmp_path / "b0" / "progress.json").write_text(json.dumps(progress))
    console = Console(file=io.StringIO(), width=120)
    with LiveRuns(console, store, ["b0", "b1"]) as live:
        records = live.refresh()
    assert {r["id"]: r["status"] for r in records} == {"b0": "running", "b1": "damaged"}
