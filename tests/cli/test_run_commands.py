"""Issue #13, daily use on the command line: errors before queueing, rerun, logs of a queued run, diff, tags
and notes, rm --status, conflicting options, the cancel reason and the Ctrl-C hint. Real stores, real workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amltui.app import preflight
from amltui.app.runs.states import change_record
from amltui.app.runs.store import Store
from amltui.app.service import UserError, launch
from amltui.app.service.launch import LaunchRequest
from amltui.app.service.rerun import RerunRequest, plan_rerun
from amltui.cli import app
from tests.helpers import ROOT, WAIT, finished, new_run, tiny_sets, wait_until

FASHION = Path("/usr/share/datasets/fashion-mnist")
runner = CliRunner()


def invoke(*args: str, runs: Path, stdin: str | None = None):
    return runner.invoke(app, [*args, "--runs-dir", str(runs)], input=stdin)


# ---- 1. errors arrive before anything is queued (with --detach too) -------------------------------------------
def refused(result, runs: Path, says: str) -> None:
    assert result.exit_code == 2, result.output
    assert says in result.output and "queued" not in result.output, result.output
    assert not (runs / "store.json").exists() or Store(runs).all() == []  # nothing was queued


@pytest.mark.slow
def test_missing_data_is_refused_before_queueing(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    # mnist with an empty download cache and an unreachable mirror (a closed local port, not the network)
    monkeypatch.setenv("AMLTUI_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(preflight.DOWNLOAD_HOSTS, "mnist", ("127.0.0.1", 9))
    refused(invoke("run", "--dataset", "mnist", "--detach", runs=runs), runs, "cannot be reached")
    refused(invoke("run", "--dataset", "mnist", "--data-dir", "/nonexistent", "--detach", runs=runs), runs,
            "no folder /nonexistent")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(invoke("run", "--dataset", "fashion-mnist", "--data-dir", str(empty), "--detach", runs=runs), runs,
            "train-images-idx3-ubyte")
    refused(invoke("run", "--dataset", "mnist-sample", "--test-subset", "5000", "--detach", runs=runs), runs,
            "--test-subset 5000: the mnist-sample test split holds only 1000 images")
    refused(invoke("run", "--dataset", "synthetic", "--device", "cuda:7", "--detach", runs=runs), runs,
            "no visible GPU 7")
    # The dashboard's launch form goes through the same service call.
    with pytest.raises(UserError, match="holds only 1000 images"):
        launch(Store(runs), LaunchRequest(variants=["ml_sa"], seeds=[0], dataset="mnist-sample", test_subset=5000))
    assert Store(runs).all() == []


def test_an_option_and_a_set_item_for_the_same_key_are_refused(tmp_path):
    result = invoke("run", "--dataset", "synthetic", "--epochs", "3", "--set", "epochs=2", "--detach", runs=tmp_path)
    refused(result, tmp_path, "--epochs 3 and --set epochs=2 both set epochs")
    result = invoke("run", "--dataset", "synthetic", "--test-subset", "64", "--grid", "test_subset=32,64",
                    runs=tmp_path)
    refused(result, tmp_path, "both set test_subset")


# ---- 2. rerun and resume --------------------------------------------------------------------------------------
def test_a_run_failed_for_its_data_is_fixed_by_rerun_not_resume(tmp_path):
    store = Store(tmp_path)
    old = new_run(store, "old", dataset="fashion-mnist", data_dir=str(tmp_path / "gone"))
    finished(store, old, "failed", error="fashion-mnist: no folder")
    result = invoke("resume", old, runs=tmp_path)
    assert result.exit_code == 2 and "cannot be resumed as it is" in result.output, result.output
    assert f"amltui rerun {old}" in result.output and store.get(old)["status"] == "failed"
    result = invoke("rerun", old, "--data-dir", str(tmp_path / "still-gone"), "--detach", runs=tmp_path)
    assert result.exit_code == 2 and "still-gone" in result.output and len(store.all()) == 1, result.output
    result = invoke("rerun", old, "--data-dir", "x", "--set", "data_dir=y", runs=tmp_path)
    assert result.exit_code == 2 and "both set data_dir" in result.output
    if FASHION.is_dir():  # the real files (Debian's dataset-fashion-mnist) pass the same checks
        config = plan_rerun(store, store.get(old), RerunRequest(data_dir=str(FASHION), overrides=["epochs=2"]))
        assert config.data_dir == str(FASHION) and config.epochs == 2 and config.dataset == "fashion-mnist"


@pytest.mark.slow
def test_rerun_trains_a_new_run_with_the_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the worker runs this checkout
    store = Store(tmp_path)
    old = finished(store, new_run(store, "old", epochs=2), "failed", error="lost")
    result = invoke("rerun", old, "--set", "epochs=1", "--set", "lr=0.002", "--id", "new", "--cpu-slots", "1",
                    runs=tmp_path)
    assert result.exit_code == 0, result.output
    assert "new (rerun of old)" in result.output
    new = store.get("new")
    assert new["status"] == "done" and new["metrics"], new
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config["epochs"] == 1 and config["lr"] == 0.002 and config["variant"] == "baseline"
    assert config["overrides"] == ["epochs=1", "lr=0.002"]
    assert store.get("old")["status"] == "failed"  # the old run is left as it was
    assert "rerun of old with epochs=1, lr=0.002" in (tmp_path / "new" / "log.txt").read_text()


def test_resume_takes_the_dispatch_options_of_run(tmp_path):
    store = Store(tmp_path)
    finished(store, new_run(store, "r"), "cancelled")
    for args, says in ((["--cpu-slots", "0"], "--cpu-slots 0: must be from 1 to 1024"),
                       (["--time", "0"], "--time 0"), (["--slots-per-gpu", "x"], "x")):
        result = invoke("resume", "r", *args, runs=tmp_path)
        assert result.exit_code == 2 and says in result.output, result.output
    assert store.get("r")["status"] == "cancelled"  # refused before anything changed


# ---- 3. logs of a queued run ----------------------------------------------------------------------------------
def test_logs_of_a_queued_run_says_it_is_queued_and_why(tmp_path):
    store = Store(tmp_path)
    run_id = new_run(store, "q")
    result = invoke("logs", run_id, runs=tmp_path)
    assert result.exit_code == 0
    assert "q is queued but no scheduler holds it" in result.output
    assert "`amltui cancel q`, then `amltui resume q`" in result.output
    change_record(store, run_id, executor="slurm", slurm_job_id="4242")
    result = invoke("logs", run_id, runs=tmp_path)
    assert "queued as Slurm job 4242" in result.output and "squeue -j 4242" in result.output


# ---- 4. diff -------------------------------------------------------------------------------------------------
def test_diff_shows_what_differs_verbatim_and_all_with_all(tmp_path):
    store = Store(tmp_path)
    a = finished(store, new_run(store, "a", lr=0.001), metrics={"A_orig": 91.23456789, "A_PGD": 40.0})
    b = finished(store, new_run(store, "b", lr=0.002), metrics={"A_orig": 90.5, "A_PGD": 40.0})
    result = invoke("diff", "a", "b", runs=tmp_path)
    assert result.exit_code == 0, result.output
    lines = {line.split()[-3] if len(line.split()) >= 3 else "": line for line in result.output.splitlines()}
    assert "lr" in lines and "0.001" in lines["lr"] and "0.002" in lines["lr"], result.output
    assert "91.23456789" in result.output and "90.5" in result.output  # verbatim, not rounded
    assert "A_PGD" not in result.output and "batch_size" not in result.output  # equal: left out
    everything = invoke("diff", a, b, "--all", runs=tmp_path)
    assert everything.exit_code == 0 and "A_PGD" in everything.output and "batch_size" in everything.output
    same = finished(store, new_run(store, "c", lr=0.001), metrics={"A_orig": 91.23456789, "A_PGD": 40.0})
    result = invoke("diff", a, same, runs=tmp_path)
    assert result.exit_code == 0 and "no differences" in result.output, result.output
    assert invoke("diff", a, runs=tmp_path).exit_code == 2
    assert "the same run is named twice" in invoke("diff", a, "a", runs=tmp_path).output


# ---- 5. tags and notes ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tags_and_notes_are_stored_and_used_by_where_and_group_by(tmp_path):
    store = Store(tmp_path)
    for seed in (0, 1):
        finished(store, new_run(store, f"t{seed}", seed=seed), metrics={"A_orig": 90.0 + seed})
    finished(store, new_run(store, "u", seed=2), metrics={"A_orig": 50.0})
    result = invoke("tag", "t0", "t1", "paper", runs=tmp_path)
    assert result.exit_code == 0 and "t0: tagged paper" in result.output and "t1: tagged paper" in result.output
    assert "already had paper" in invoke("tag", "t0", "paper", runs=tmp_path).output
    assert invoke("tag", "u", "draft", runs=tmp_path).exit_code == 0
    assert store.get("t0")["tags"] == ["paper"]
    assert json.loads((tmp_path / "t0" / "run.json").read_text())["tags"] == ["paper"]  # the record, not a copy
    bad = invoke("tag", "t0", "two words", runs=tmp_path)
    assert bad.exit_code == 2 and "is not a tag" in bad.output and store.get("t0")["tags"] == ["paper"]
    note = "baseline for the paper's Table 1 [draft]"
    assert invoke("note", "u", note, runs=tmp_path).exit_code == 0
    assert store.get("u")["note"] == note  # verbatim, markup-like text included
    table = invoke("export", "--where", "tag=paper", "--with-runs", runs=tmp_path)
    assert invoke("export", "--where", "tag=nope", runs=tmp_path).exit_code == 0  # a tag no run has: no rows
    assert table.exit_code == 0 and "t0" in table.output and "t1" in table.output and "| u" not in table.output
    grouped = invoke("export", "--group-by", "tag", runs=tmp_path)
    assert grouped.exit_code == 0 and "tag=paper" in grouped.output and "tag=draft" in grouped.output, grouped.output
    assert "90.50" in grouped.output and "50.00" in grouped.output  # t0 and t1 pooled, u alone
    result = invoke("tag", "t0", "paper", "--remove", runs=tmp_path)
    assert "t0: untagged paper" in result.output and store.get("t0")["tags"] == []
    assert invoke("note", "u", "", runs=tmp_path).exit_code == 0 and store.get("u")["note"] is None


# ---- 6. rm --status, prompts that list ids, ambiguous prefixes ------------------------------------------------
def test_rm_by_status_lists_the_ids_and_asks(tmp_path):
    store = Store(tmp_path)
    failed = [finished(store, new_run(store, f"f{i}", seed=i), "failed", error="x") for i in range(2)]
    finished(store, new_run(store, "keep", seed=5))
    result = invoke("rm", "--status", "failed", runs=tmp_path, stdin="n\n")
    assert result.exit_code == 0 and "delete 2 run(s) and their folders (f0, f1)?" in result.output, result.output
    assert "Nothing removed." in result.output and "Aborted" not in result.output  # "no" is an answer, exit 0
    assert len(store.all()) == 3 and all((tmp_path / i).exists() for i in failed)
    result = invoke("rm", "--status", "faild", runs=tmp_path)
    assert result.exit_code == 2 and "did you mean 'failed'" in result.output
    result = invoke("rm", "--status", "failed", runs=tmp_path, stdin="y\n")
    assert result.exit_code == 0 and [r["id"] for r in store.all()] == ["keep"]
    assert not any((tmp_path / i).exists() for i in failed)
    assert "nothing deleted" in invoke("rm", "--status", "failed", runs=tmp_path).output


def test_a_prefix_shows_what_it_matched(tmp_path):
    store = Store(tmp_path)
    for i in range(10):
        finished(store, new_run(store, f"run{i}", seed=i))
    result = invoke("show", "run", runs=tmp_path)
    assert result.exit_code == 2 and "matches 10 runs" in result.output and "… and 2 more" in result.output
    result = invoke("rm", "run7", runs=tmp_path, stdin="n\n")
    assert "(run7)?" in result.output and "Nothing removed." in result.output and result.exit_code == 0


# ---- 7. who cancelled a run; the Ctrl-C hint ------------------------------------------------------------------
@pytest.mark.slow
def test_the_cancel_reason_names_who_cancelled(tmp_path, monkeypatch):
    from amltui.app.executors.local import LocalScheduler
    from amltui.app.executors.slots import make_slots

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("AMLTUI_TEST_HOLD", "train")
    store = Store(tmp_path)
    ids = [new_run(store, name, epochs=50) for name in ("by-amltui", "by-kill")]
    scheduler = LocalScheduler(store, ids, make_slots([], cpu_slots=2, cores=2))
    scheduler.step()
    for run_id in ids:
        wait_until((tmp_path / run_id / "hold-train").exists, f"{run_id} to hold at train")
    assert invoke("cancel", "by-amltui", runs=tmp_path).exit_code == 0
    os.kill(store.get("by-kill")["pid"], signal.SIGTERM)  # a signal without any request through amltui
    wait_until(lambda: all(store.get(i)["status"] == "cancelled" for i in ids) or not scheduler.step(), "the cancels")
    wait_until(lambda: all(store.get(i)["status"] == "cancelled" for i in ids), "both runs to end cancelled")
    mine, killed = store.get("by-amltui")["error"], store.get("by-kill")["error"]
    assert mine.startswith("cancelled with `amltui cancel`") and "stopped by signal" not in mine, mine
    assert killed.startswith("cancelled by SIGTERM, not through amltui"), killed
    assert all("stopped while training" in e for e in (mine, killed))


@pytest.mark.slow
def test_ctrl_c_hint_names_the_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AMLTUI_TEST_HOLD": "train"}
    proc = subprocess.Popen([sys.executable, "-m", "amltui", "run", "--dataset", "synthetic", "--epochs", "50",
                             "--id", "held", *tiny_sets(), "--runs-dir", str(tmp_path)], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_until((tmp_path / "held" / "hold-train").exists, "the worker to hold at train")
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=WAIT)[0]
    assert proc.returncode == 130, output
    assert "To continue: amltui resume held" in output and "resume RUN" not in output


@pytest.mark.slow
def test_logs_of_a_run_waiting_for_a_slot_names_its_scheduler(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AMLTUI_TEST_HOLD": "train"}
    started = subprocess.run([sys.executable, "-m", "amltui", "run", "--dataset", "synthetic", "--epochs", "50",
                              "--variants", "baseline,ml_sa", "--cpu-slots", "1", "--detach", *tiny_sets(),
                              "--runs-dir", str(tmp_path)], env=env, cwd=ROOT, text=True, capture_output=True,
                             timeout=WAIT)
    assert started.returncode == 0, started.stdout + started.stderr
    store = Store(tmp_path)
    try:
        first = wait_until(lambda: [r["id"] for r in store.all() if (tmp_path / r["id"] / "hold-train").exists()],
                         "one run to hold at train")[0]
        waiting = next(r["id"] for r in store.all() if r["id"] != first)
        result = invoke("logs", waiting, runs=tmp_path)
        text = " ".join(result.output.split())
        assert result.exit_code == 0 and f"{waiting} is queued: it waits for a free slot of its scheduler" in text
        assert "which has 1 run(s) running and 1 queued" in text, text
    finally:
        invoke("cancel", "--all", runs=tmp_path)
        wait_until(lambda: all(r["status"] in ("cancelled", "done", "failed") for r in store.all()), "the runs to end")
