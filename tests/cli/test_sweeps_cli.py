"""Sweeps through the command line: `run --grid … --sweep`, `export --sweep`, `plot --sweep`, `--where sweep=`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image
from typer.testing import CliRunner

from amltui.app.runs.store import Store
from amltui.cli import app
from tests.helpers import ROOT, tiny_sets

runner = CliRunner()
TINY_RUN = ["--dataset", "synthetic", "--epochs", "1", *tiny_sets(monitor_pgd=0)]


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


@pytest.mark.slow
def test_a_grid_sweep_runs_exports_and_plots(tmp_path):
    runs = str(tmp_path)
    result = invoke("run", "--variant", "ml_sa", "--grid", "lambda_sa=0.25,0.5", "--seeds", "0,1", "--sweep", "sa",
                    *TINY_RUN, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    assert "sweep sa: 4 runs = 1 variant(s) × 2 grid point(s) (lambda_sa: 2) × 2 seed(s)" in result.output
    base = invoke("run", "--variant", "baseline", "--seeds", "0,1", "--sweep", "sa", *TINY_RUN, "--runs-dir", runs)
    assert base.exit_code == 0, base.output
    records = Store(tmp_path).all()
    assert len(records) == 6 and {r["sweep"] for r in records} == {"sa"}
    assert sorted(r["config"]["lambda_sa"] for r in records if r["variant"] == "ml_sa") == [0.25, 0.25, 0.5, 0.5]

    # The same grid again reuses the finished runs (amltui/app/runs/reuse.py) and queues nothing.
    again = invoke("run", "--variant", "ml_sa", "--grid", "lambda_sa=0.25,0.5", "--seeds", "0,1", "--sweep", "sa2",
                   *TINY_RUN, "--runs-dir", runs)
    assert again.exit_code == 0, again.output
    assert len(Store(tmp_path).all()) == 6
    table = invoke("export", "--sweep", "sa2", "--format", "csv", "--runs-dir", runs)
    assert table.exit_code == 0, table.output
    assert len(list(csv.DictReader(io.StringIO(table.output)))) == 2  # the reused runs belong to sa2 too

    md = invoke("export", "--sweep", "sa", "--runs-dir", runs)
    assert md.exit_code == 0, md.output
    lines = [line for line in md.output.splitlines() if line.startswith("| ")]
    at = lines[0].split(" | ").index("Setting")  # no Dataset column: every row has the same dataset
    settings = [line.split(" | ")[at] for line in lines[2:5]]
    assert settings == ["lambda_sa=0 (paper's baseline)", "lambda_sa=0.25", "lambda_sa=0.5 (paper's ml_sa)"]
    assert "(n=2; SE_bin" in md.output and "ΔA_PGD" in md.output

    listed = json.loads(invoke("ls", "--json", "--runs-dir", runs).output)
    assert len(listed) == 6
    where = invoke("export", "--where", "sweep=sa", "--format", "csv", "--runs-dir", runs)
    assert where.exit_code == 0 and len(list(csv.DictReader(io.StringIO(where.output)))) == 3

    out = tmp_path / "front.png"
    plot = invoke("plot", "--sweep", "sa", "--x", "A_PGD", "--y", "A_SA", "--interval", "ci95", "--out", str(out),
                  "--runs-dir", runs)
    assert plot.exit_code == 0, plot.output
    assert f"wrote {out}" in plot.output.replace("\n", "") and "95% t-interval" in plot.output
    assert "3 ml_sa lambda_sa=0.5" in plot.output
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 500
    no_ia = invoke("plot", "--sweep", "sa", "--runs-dir", runs)  # default y = A_IA: not evaluated here
    assert no_ia.exit_code == 2 and "no finished run with both A_PGD and A_IA" in no_ia.output


def test_bad_grids_and_large_sweeps_queue_nothing(tmp_path):
    runs = str(tmp_path)
    bad = invoke("run", "--variant", "ml_sa_ia", "--grid", "lambda_ia=0,0.5", *TINY_RUN, "--runs-dir", runs)
    assert bad.exit_code == 2 and "grid point lambda_ia=0" in bad.output
    typo = invoke("run", "--grid", "lamda_ia=0.5", *TINY_RUN, "--runs-dir", runs)
    assert typo.exit_code == 2 and "did you mean 'lambda_ia'" in typo.output
    name = invoke("run", "--grid", "lr=1e-3,1e-4", "--sweep", "bad/name", *TINY_RUN, "--runs-dir", runs)
    assert name.exit_code == 2 and "sweep name" in name.output
    big = invoke("run", "--grid", "lr=1e-4:1e-2:log:26", "--seeds", "0,1", *TINY_RUN, "--runs-dir", runs, input="n\n")
    assert big.exit_code == 2 and "52 runs" in big.output and "nothing queued" in big.output
    assert Store(tmp_path).all() == []
    ids = invoke("run", "--grid", "lr=1e-3,1e-4", "--id", "one", *TINY_RUN, "--runs-dir", runs)
    assert ids.exit_code == 2 and "--id names a single run" in ids.output
    unknown = invoke("export", "--sweep", "nope", "--runs-dir", runs)
    assert unknown.exit_code == 2 and "no run belongs to sweep 'nope'" in unknown.output


@pytest.mark.slow
def test_a_sweep_in_a_real_subprocess_records_its_name_and_a_manifest(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "amltui", "run", "--variant", "ml_sa", "--grid",
                           "margin=0.05:0.1:2", "--seeds", "0", "--sweep", "m", *TINY_RUN, "--runs-dir", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = Store(tmp_path).all()
    assert sorted(r["config"]["margin"] for r in records) == [0.05, 0.1]
    assert all(r["status"] == "done" and r["sweep"] == "m" for r in records)
    manifest = json.loads((tmp_path / "reports" / "sweeps" / "m.json").read_text())
    assert manifest["keys"] == ["margin"] and sorted(manifest["runs"]) == sorted(r["id"] for r in records)
