"""Issue 24, terminal tables: never a cut number (whole columns left out by priority, and named), the failure
reason visible at 80 columns, whole rows in a pipe and with --wide; runs at chance said so everywhere."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from amltui.app.results.report import aggregate, render
from amltui.app.runs.progress import describe
from amltui.app.runs.states import change_record
from amltui.app.runs.store import Store
from amltui.cli import app
from amltui.cli.lifecycle import _summary, summary_table
from core.config import RunConfig
from core.flags import at_chance, check_run, flags_record
from tests.helpers import ROOT, finished, new_run

runner = CliRunner()
ERROR = "TrainingFailed: loss became nan at epoch 3 (lr too high?); lower lr or check the data"
METRICS = {"A_orig": 99.25, "A_SA": 97.15, "A_IA": 80.0, "A_IA_target": 12.5, "A_PGD": 71.65, "A_AA": 70.1}


def _failed_store(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    for i in range(2):
        finished(store, new_run(store, f"ml_sa_ia-s{i}-1206-201805-87ca", variant="ml_sa_ia", seed=i), "failed",
                 error=ERROR)
    return store


def ls(tmp_path: Path, *args: str, columns: str | None) -> subprocess.CompletedProcess:
    """The real `amltui ls`, its output piped (as `| cat`), with $COLUMNS set or not."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": columns} if columns else {})
    return subprocess.run([sys.executable, "-m", "amltui", "ls", "--runs-dir", str(tmp_path), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_ls_shows_the_failure_reason_at_80_columns(tmp_path):
    _failed_store(tmp_path)
    out = ls(tmp_path, "--status", "failed", columns="80").stdout
    table = [line for line in out.splitlines() if "ml_sa_ia-s0" in line]
    assert table and all(len(line) <= 80 for line in out.splitlines()), out
    assert "TrainingFailed: loss" in table[0]
    assert "not shown at 80 columns: " in out and "--wide" in out  # what was left out is named


@pytest.mark.slow
def test_piped_ls_and_wide_give_whole_rows(tmp_path):
    _failed_store(tmp_path)
    piped = ls(tmp_path, "--status", "failed", columns=None).stdout
    row = next(line for line in piped.splitlines() if "ml_sa_ia-s1" in line)
    assert ERROR in row and "ml_sa_ia" in row.split(ERROR)[1] and "synthetic" in row and len(row) > 80
    assert "not shown" not in piped
    wide = ls(tmp_path, "--status", "failed", "--wide", columns="80").stdout
    assert ERROR in wide and "not shown" not in wide and "seed" in wide and "dataset" in wide


def test_the_end_of_run_table_leaves_out_whole_columns_never_a_number():
    records = [{"id": f"ml_sa_ia-s{i}-lambda_sa=0.25-1206-201805-87ca", "status": "done" if i else "cancelled",
                "metrics": METRICS} for i in range(3)]
    for width in (60, 80, 100, 120):
        table, dropped = summary_table(records, width)
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(table)
        text = console.export_text()
        assert "…" not in text and all(len(line) <= width for line in text.splitlines()), text
        assert all(r["id"] in text for r in records) and "cancelled" in text
        shown = [v for v in ("99.25", "97.15", "80.00", "12.50", "71.65", "70.10") if v in text]
        assert len(shown) + len(dropped) == 6  # each metric is whole or named as left out
    table, dropped = summary_table(records, 80)
    assert dropped[:2] == ["A_AA", "→tgt"]  # the least telling first (core/metrics.py HEADLINE_ORDER)
    assert summary_table(records, None)[1] == []


def test_a_run_at_chance_is_flagged_and_says_so(tmp_path, capsys):
    config = RunConfig.resolve("baseline", "quick")
    flag = at_chance(config, {"A_orig": 10.16, "A_SA": 10.16}, [])
    assert [f.name for f in flag] == ["at_chance"] and "10.16% is at chance" in flag[0].reasons[0]
    assert at_chance(config, {"A_orig": 16.0}, []) == []
    assert "at_chance" in flags_record(check_run(config, {"A_orig": 10.0, "A_SA": 10.0, "A_PGD": 10.0}, []))["flags"]

    store = Store(tmp_path)
    ids = [finished(store, new_run(store, f"b{i}", seed=i)) for i in range(2)]
    fields = flags_record(check_run(config, {"A_orig": 10.0, "A_SA": 10.0, "A_PGD": 10.0}, []))
    for i in ids:
        change_record(store, i, metrics={"A_orig": 10.0, "A_SA": 10.0, "A_PGD": 10.0},
                      metrics_n={"A_orig": 300, "A_SA": 300, "A_PGD": 300}, **fields)
    _summary(store, ids)  # the end of `amltui run`
    end = capsys.readouterr().out
    assert "⚠ b0: at_chance: A_orig 10.00% is at chance" in end
    piped_done = describe(store.get("b0"), {})[0]
    assert piped_done == "done  A_orig 10.00  A_SA 10.00  A_PGD 10.00  (at chance: learned nothing)"

    listed = runner.invoke(app, ["ls", "--runs-dir", str(tmp_path)], env={"COLUMNS": "120"}).output
    row = next(line for line in listed.splitlines() if line.startswith(" b0"))
    assert "⚠" in row and "at_chance" in row

    md = render(aggregate([store.get(i) for i in ids]), "md")
    assert re.search(r"\| 10\.00 ± 0\.00 \(n=2[^|]*\) ⚠ \|", md), md  # A_orig is the cell marked
    assert "at_chance — rule: A_orig ≤ chance (10% for 10 classes) + 5 points" in md


def test_live_progress_lines_fit_80_columns_with_labelled_clocks(tmp_path):
    import json as _json

    from amltui.app.runs.folders import run_dir
    from amltui.app.runs.progress import LiveRuns

    store = Store(tmp_path)
    running = new_run(store, "ml_sa_ia-s0-1206-201805-87ca", variant="ml_sa_ia")
    change_record(store, running, status="running")
    progress = {"kind": "batch", "batch": {"epoch": 3, "epochs": 8, "step": 12, "steps": 50, "loss": 0.1234}}
    (run_dir(store.runs_dir, running).path / "progress.json").write_text(_json.dumps(progress))
    done = finished(store, new_run(store, "ml_sa_ia-s1-1206-201805-87cb", variant="ml_sa_ia", seed=1))
    change_record(store, done, metrics={"A_orig": 97.1, "A_SA": 80.0, "A_PGD": 70.0},
                  started="2026-12-01T07:00:00.0Z", ended="2026-12-01T07:03:05.0Z")
    console = Console(record=True, width=80, file=io.StringIO(), force_terminal=False)
    with LiveRuns(console, store, [running, done]) as live:
        live.refresh()
    lines = [line for line in console.export_text().splitlines() if line.strip()]
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines), lines  # one line each, no wrap
    live_line = next(line for line in lines if running in line)
    assert "epoch 3/8 loss 0.1234" in live_line and "elapsed " in live_line and " ETA " in live_line
    done_line = next(line for line in lines if done in line)
    assert "done  took 3m05s" in done_line  # its metrics follow in the end-of-run table

    reason = "cancelled (Ctrl-C in the foreground) by user@host pid 4242 while the scheduler waited for a slot"
    cancelled = finished(store, new_run(store, "ml_sa_ia-s2-1206-201805-87cc", variant="ml_sa_ia", seed=2),
                         "cancelled", error=reason)
    console = Console(record=True, width=80, file=io.StringIO(), force_terminal=False)
    with LiveRuns(console, store, [cancelled]) as live:  # the Ctrl-C frame: the reason whole, wrapped
        live.refresh()
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
    assert reason in " ".join(" ".join(line.split()[2:] if cancelled in line else line.split())
                              for line in text.splitlines())
