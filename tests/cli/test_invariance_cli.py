"""`amltui invariance generate/show`, ml_sa_ia training on real invariance examples, and A_IA in the tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amltui.app.runs.store import Store
from amltui.cli import app

runner = CliRunner()
FASHION = "/usr/share/datasets/fashion-mnist"
SUBSET = ["--train-subset", "60", "--test-subset", "30"]


def cache_files(runs: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (runs / "cache" / "invariance").rglob("*") if p.is_file()}


@pytest.mark.slow
def test_generate_caches_and_the_second_call_reuses(tmp_path):
    args = ["invariance", "generate", "--dataset", "synthetic", *SUBSET, "--runs-dir", str(tmp_path)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "train: 60 examples" in first.output and "test: 30 examples" in first.output
    files = cache_files(tmp_path)
    assert sum(1 for p in files if p.name == "complete") == 2
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "train: 60 examples" in second.output
    assert cache_files(tmp_path) == files  # nothing rewritten: a pure cache hit

    shown = runner.invoke(app, ["invariance", "show", "--dataset", "synthetic", *SUBSET, "-n", "3",
                                "--out", str(tmp_path / "grid.png"), "--runs-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "no cached set" not in shown.output  # used the cache
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_generate_on_real_fashion_mnist_idx_files(tmp_path):
    out = runner.invoke(app, ["invariance", "generate", "--dataset", "fashion-mnist", "--data-dir", FASHION,
                              "--train-subset", "50", "--test-subset", "20", "--split", "test",
                              "--runs-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "test: 20 examples" in out.output and "fashion-mnist" in out.output


def test_bad_options_are_refused(tmp_path):
    for args, message in ((["--split", "val"], "--split"), (["--mode", "quick"], "--mode"), (["--eps", "3"], "--eps")):
        out = runner.invoke(app, ["invariance", "generate", *args, "--runs-dir", str(tmp_path)])
        assert out.exit_code == 2 and message in out.output


@pytest.mark.slow
def test_ml_sa_ia_trains_on_invariance_examples_and_reports_a_ia(tmp_path):
    sets = ["arch=small", "train_subset=60", "test_subset=30", "batch_size=30", "pgd_steps=2", "threads=1"]
    for variant in ("baseline", "ml_sa_ia"):
        out = runner.invoke(app, ["run", "--variant", variant, "--dataset", "synthetic", "--epochs", "1",
                                  "--runs-dir", str(tmp_path), *[a for s in sets for a in ("--set", s)]])
        assert out.exit_code == 0, out.output
    records = {r["variant"]: r for r in Store(tmp_path).all()}
    ia = records["ml_sa_ia"]
    assert {"A_IA", "A_IA_target"} <= set(ia["metrics"]) and ia["metrics_n"]["A_IA"] == 30
    epoch = json.loads((tmp_path / ia["id"] / "metrics.jsonl").read_text().splitlines()[0])
    assert epoch["train_triplet_ia"] > 0  # the IA triplet really had invariance positives
    table = runner.invoke(app, ["export", "--format", "md", "--runs-dir", str(tmp_path)]).output
    header = next(line for line in table.splitlines() if line.startswith("| Variant"))
    assert "A_IA" in header and "A_IA→target" in header
