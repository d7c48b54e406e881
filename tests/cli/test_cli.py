"""The command line, through Typer's runner and through real subprocesses."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amltui.app.runs.store import Store
from amltui.cli import app
from tests.helpers import ROOT, tiny_sets

runner = CliRunner()


def set_args(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result


def run_tiny(runs: Path, *extra: str, variant: str = "ml_sa", seed: int = 0):
    return invoke("run", "--variant", variant, "--seed", str(seed), "--dataset", "synthetic", "--epochs", "1",
                  "--runs-dir", str(runs), *tiny_sets(), *extra)


@pytest.mark.slow
def test_run_writes_the_run_folder_and_records_final_metrics(tmp_path):
    result = run_tiny(tmp_path)
    assert result.exit_code == 0, result.output
    (record,) = Store(tmp_path).all()
    assert record["status"] == "done" and record["epoch"] == 1
    folder = tmp_path / record["id"]
    for name in ("config.json", "run.json", "metrics.jsonl", "log.txt", "checkpoint.pt"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["variant"] == "ml_sa" and config["arch"] == "small" and config["epochs"] == 1
    assert json.loads((folder / "run.json").read_text())["metrics"] == record["metrics"]
    assert set(record["metrics"]) == {"A_orig", "A_SA", "A_PGD"}
    assert record["metrics_n"]["A_orig"] == 128
    assert len(record["fingerprint"]) >= 16
    kinds = [json.loads(line)["kind"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert kinds == ["epoch", "eval"]
    assert "A_orig" in result.output and record["id"] in result.output
    assert record["slot"] == "cpu0" and record["executor"] == "local" and record["pid"] is None


@pytest.mark.slow
def test_ls_show_eval_and_export(tmp_path):
    for seed in (0, 1):
        assert run_tiny(tmp_path, variant="baseline", seed=seed).exit_code == 0
        assert run_tiny(tmp_path, variant="ml_sa", seed=seed).exit_code == 0
    listed = json.loads(invoke("ls", "--json", "--runs-dir", str(tmp_path)).output)
    assert len(listed) == 4 and {r["status"] for r in listed} == {"done"}
    assert {"id", "variant", "seed", "dataset", "status", "epoch", "metrics", "pid"} <= listed[0].keys()
    table = invoke("ls", "--runs-dir", str(tmp_path))
    assert table.exit_code == 0 and "baseline" in table.output

    run_id = listed[0]["id"]
    shown = invoke("show", run_id[:-2], "--runs-dir", str(tmp_path))  # a unique prefix is enough
    assert shown.exit_code == 0 and run_id in shown.output and "config (" in shown.output

    evaluated = invoke("eval", run_id, "--runs-dir", str(tmp_path))
    assert evaluated.exit_code == 0, evaluated.output
    assert Store(tmp_path).get(run_id)["metrics"] == listed[0]["metrics"]  # deterministic re-evaluation

    md = invoke("export", "--format", "md", "--runs-dir", str(tmp_path))
    assert md.exit_code == 0
    lines = [line for line in md.output.splitlines() if line.startswith("| baseline") or line.startswith("| ml_sa")]
    assert len(lines) == 3  # two result rows, then ml_sa paired with the baseline
    assert "(n=2; SE_bin" in md.output and "A_orig" in md.output and "A_PGD" in md.output
    header = next(line for line in md.output.splitlines() if line.startswith("| Variant"))
    assert header.index("A_orig") < header.index("A_SA") < header.index("A_PGD")

    csv_out = invoke("export", "--format", "csv", "--where", "variant=ml_sa", "--runs-dir", str(tmp_path))
    rows = csv_out.output.strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("ml_sa,synthetic")

    out = tmp_path / "table.tex"
    tex = invoke("export", "--format", "latex", "--out", str(out), "--runs-dir", str(tmp_path))
    assert tex.exit_code == 0 and "\\begin{tabular}" in out.read_text()


@pytest.mark.slow
def test_config_errors_are_clear_and_create_nothing(tmp_path):
    result = run_tiny(tmp_path, "--set", "no_such_key=1")
    assert result.exit_code == 2
    assert "unknown config key 'no_such_key'" in result.output and "amltui config-keys" in result.output
    result = run_tiny(tmp_path, "--set", "eps_s=1.5")
    assert result.exit_code == 2 and "out of range" in result.output
    result = run_tiny(tmp_path, "--set", "lr=fast")
    assert result.exit_code == 2 and "lr='fast' is not a valid float" in result.output
    result = invoke("run", "--variant", "nope", "--runs-dir", str(tmp_path))
    assert result.exit_code == 2 and "baseline, ml_sa, ml_sa_ia" in result.output
    assert Store(tmp_path).all() == []


def test_missing_data_is_refused_before_queueing_with_the_fix(tmp_path):
    # Issue #13: checked before anything is queued (amltui/app/preflight.py), not by a run that fails seconds later.
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("run", "--dataset", "fashion-mnist", "--data-dir", str(empty), "--runs-dir", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "train-images-idx3-ubyte" in result.output and "Fix:" in result.output and "queued" not in result.output
    assert Store(tmp_path / "r").all() == []


@pytest.mark.slow
def test_unknown_and_invalid_run_ids(tmp_path):
    assert run_tiny(tmp_path).exit_code == 0
    result = invoke("show", "nope", "--runs-dir", str(tmp_path))
    assert result.exit_code == 2 and "no run 'nope'" in result.output
    result = invoke("show", "../etc", "--runs-dir", str(tmp_path))
    assert result.exit_code == 2


def amltui(*args: str, runs: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "AMLTUI_RUNS_DIR": str(runs), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "amltui", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


SLOW_SET = ["arch=small", "train_subset=2000", "test_subset=200", "batch_size=64", "pgd_steps=3", "threads=1",
            "eval_ia=false"]


@pytest.mark.slow
def test_subprocess_run_interrupted_then_resumed_matches_an_uninterrupted_run(tmp_path):
    common = ["run", "--dataset", "synthetic", "--epochs", "3", *set_args(SLOW_SET)]
    full = amltui(*common, "--id", "full", runs=tmp_path)
    assert full.wait(timeout=300) == 0, full.stdout.read()

    part = amltui(*common, "--id", "part", "--repeat", runs=tmp_path)  # the same config again, on purpose
    deadline = time.time() + 120
    checkpoint = tmp_path / "part" / "checkpoint.pt"
    while not checkpoint.exists():
        assert time.time() < deadline and part.poll() is None, "the run never wrote its first checkpoint"
        time.sleep(0.05)
    part.send_signal(signal.SIGINT)
    output = part.communicate(timeout=120)[0]
    assert part.returncode == 130, output
    assert "amltui resume" in output
    assert Store(tmp_path).get("part")["status"] == "cancelled"

    resumed = amltui("resume", "part", runs=tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    store = Store(tmp_path)
    assert store.get("part")["status"] == "done"
    assert store.get("part")["metrics"] == store.get("full")["metrics"]
    epochs = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e["kind"] == "epoch"][-1] == 3


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["--version"]])
def test_help_and_version(args):
    result = invoke(*args)
    assert result.exit_code == 0 and ("amltui" in result.output or "Usage" in result.output)


@pytest.mark.slow
def test_corrupt_store_gives_a_clear_message_and_rebuild_restores_the_runs(tmp_path):
    assert run_tiny(tmp_path).exit_code == 0
    assert run_tiny(tmp_path, seed=1).exit_code == 0
    (tmp_path / "store.json").write_text("{ this is not json")
    listed = invoke("ls", "--runs-dir", str(tmp_path))
    assert listed.exit_code == 2 and "amltui store rebuild" in listed.output
    assert list(tmp_path.glob("store.json.corrupt-*"))  # the bad file is kept aside
    rebuilt = invoke("store", "rebuild", "--runs-dir", str(tmp_path))
    assert rebuilt.exit_code == 0 and "restored 2 run(s)" in rebuilt.output
    listed = json.loads(invoke("ls", "--json", "--runs-dir", str(tmp_path)).output)
    assert len(listed) == 2 and {r["status"] for r in listed} == {"done"}


def test_ls_fits_the_terminal_by_leaving_columns_out():
    from rich.console import Console

    from amltui.cli.results import runs_table

    records = [{"id": f"ml_sa_ia-s{i}-1124-005245-7a42", "status": "done", "epoch": 8, "epochs": 8,
                "variant": "ml_sa_ia", "seed": i, "dataset": "fashion-mnist", "slot": "gpu0#1",
                "metrics": {"A_orig": 91.5, "A_SA": 80.25, "A_IA": 70.0, "A_IA_target": 9.5, "A_PGD": 1.0}}
               for i in range(3)]
    for width in (80, 100, 200):
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(runs_table(records, width))
        text = console.export_text()
        assert all(len(line) <= width for line in text.splitlines())
        assert "ml_sa_ia-s2-1124-005245-7a42" in text and "…" not in text  # nothing squeezed
    wide = Console(width=200, record=True, file=io.StringIO())
    wide.print(runs_table(records, 200))
    text = wide.export_text()
    assert all(h in text for h in ("A_PGD", "→tgt", "gpu0#1", "variant"))
