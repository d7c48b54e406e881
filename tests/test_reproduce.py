"""`amltui reproduce`: planning (reuse / resume / create), the report's statistics, idempotent reruns."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from amltui.app.report import Cell, Row
from amltui.app.reproduce import plan, reading
from amltui.app.runs import create_run, set_status
from amltui.app.store import Store
from amltui.cli import app
from core.config import VARIANTS, RunConfig

runner = CliRunner()
TINY = ["arch=small", "train_subset=120", "test_subset=40", "batch_size=40", "pgd_steps=2", "threads=1"]


def test_plan_reuses_finished_runs_resumes_interrupted_ones_and_creates_the_rest(tmp_path):
    store = Store(tmp_path)
    configs = [RunConfig.resolve(v, "quick", seed=s, dataset="synthetic")
               for v in ("baseline", "ml_sa") for s in (0, 1)]
    done = create_run(store, configs[0])["id"]
    set_status(store, done, "done")
    cancelled = create_run(store, configs[1])["id"]
    set_status(store, cancelled, "cancelled")
    other = create_run(store, configs[2].replace(lr=0.5))["id"]  # another config: never reused for configs[2]
    set_status(store, other, "done")
    result = plan(store, configs)
    assert result.reuse == [done] and result.resume == [cancelled]
    assert [(c.variant, c.seed) for c in result.create] == [("ml_sa", 0), ("ml_sa", 1)]


def test_reading_states_whether_a_difference_exceeds_the_seed_spread():
    row = Row("ml_sa", "mnist", "quick", [], {}, {"A_IA": Cell([-3.0, 4.0, 1.0]), "A_SA": Cell([0.5, 0.6, 0.4]),
                                               "A_orig": Cell([0.3])})
    assert "within the seed-to-seed spread" in reading(row, "A_IA")
    assert "outside the seed-to-seed spread" in reading(row, "A_SA")
    assert "single seed" in reading(row, "A_orig")
    assert reading(row, "A_PGD") == "no paired baseline runs"
    flat = Row("ml_sa", "mnist", "quick", [], {}, {"A_orig": Cell([1.0, 1.0, 1.0])})
    assert reading(flat, "A_orig") == "+1.00 pp on every seed: no spread measured (n=3), no interval"


def test_reproduce_writes_the_report_and_a_rerun_reuses_everything(tmp_path):
    args = ["reproduce", "--dataset", "synthetic", "--seeds", "0", "--variants", "baseline,ml_sa_ia", "--epochs", "1",
            "--runs-dir", str(tmp_path), *[a for s in TINY for a in ("--set", s)]]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 to start" in first.output
    folder = tmp_path / "reports" / ("reproduce-synthetic-quick-batch_size40-epochs1-pgd_steps2-test_subset40-"
                                      "train_subset120-seeds0-variants_baseline.ml_sa_ia")  # named by its size
    assert f"report: {folder / 'report.md'}\n" in first.output  # one line, however long
    report = (folder / "report.md").read_text()
    assert "## Table 1" in report and "99.02 / 98.95 / 85.67" in report
    # The paper's rows are labelled as what they are, beside the authors' three-run means; no interval on them.
    assert "single run (run 3 of the authors' logs)" in report and "98.95 / 98.88 / 86.06" in report
    assert "ε ≈ 0.0031" in report and "paper's setting" not in report
    paper_part = report.split("### The paper's rows")[1].split("## Further metrics")[0]
    assert "CI" not in paper_part and "±" not in paper_part
    # Synthetic data are not digits: A_IA is marked, human agreement is not applicable.
    assert "digit target table applied to non-digit data" in report and "not applicable" in report
    assert "PGD-2 (L∞ ε 0.1, step α 0.01" in report
    assert "ml_sa_ia − baseline, A_IA" in report and "A_IA→target" in report
    for name in ("pca-baseline.png", "pca-ml_sa_ia.png", "curves.png", "frontier.png", "results.md", "results.csv"):
        assert (folder / name).stat().st_size > 0, name
    assert "![frontier.png](frontier.png)" in report  # the sensitivity–invariance trade-off of the variants
    assert len(list((folder / "configs").glob("*.json"))) == 2
    assert "dataset fingerprints: synthetic:" in report and "torch:" in report
    ids = {r["id"] for r in Store(tmp_path).all()}

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "2 finished (reused)" in second.output and "0 to start" in second.output
    assert {r["id"] for r in Store(tmp_path).all()} == ids  # nothing new was created


def test_an_interrupted_reproduce_resumes_its_runs(tmp_path):
    args = ["reproduce", "--dataset", "synthetic", "--seeds", "0", "--variants", "baseline", "--epochs", "2",
            "--runs-dir", str(tmp_path), *[a for s in TINY + ["eval_ia=false"] for a in ("--set", s)]]
    store = Store(tmp_path)
    config = RunConfig.resolve("baseline", "quick", seed=0, dataset="synthetic", epochs=2,
                               overrides=TINY + ["eval_ia=false"])
    run_id = create_run(store, config)["id"]
    set_status(store, run_id, "cancelled", error="interrupted")  # as if Ctrl-C hit it before the first epoch
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "1 to resume" in out.output
    record = store.get(run_id)
    assert record["status"] == "done" and record["epoch"] == 2
    folder = ("reproduce-synthetic-quick-batch_size40-epochs2-eval_iafalse-pgd_steps2-test_subset40-train_subset120-"
              "seeds0-variants_baseline")
    runs = json.loads((tmp_path / "reports" / folder / "runs.json").read_text())
    assert [r["id"] for r in runs] == [run_id]


def test_reproduces_at_different_sizes_get_different_report_folders():
    from amltui.app.reproduce import report_folder_name

    def name(seeds, **size):
        return report_folder_name([RunConfig.resolve(v, "quick", seed=s, **size) for v in VARIANTS for s in seeds])

    smallest = name([0], epochs=1, train_subset=300, test_subset=300)
    assert smallest == "reproduce-mnist-sample-quick-epochs1-test_subset300-train_subset300-seeds0"
    others = {name([0], epochs=2, train_subset=300, test_subset=300), name([0, 1, 2], epochs=1, train_subset=300,
              test_subset=300), name([0], epochs=1, train_subset=1000, test_subset=300), name([0]),
              name([0], epochs=1, train_subset=300, test_subset=300, dataset="synthetic")}
    assert len(others) == 5 and smallest not in others
    assert name([0, 1, 2]) == "reproduce-mnist-sample-quick-seeds0-2"
    long = ["lr=0.000123456789", "margin=0.123456789", "mask_gap=12.3456789", "batch_size=33", "pgd_steps=17",
            "pgd_alpha=0.0123456789", "train_subset=1234", "test_subset=567", "epochs=7"]
    many = report_folder_name([RunConfig.resolve("baseline", "quick", overrides=long)])
    assert len(many) <= 150 and many != report_folder_name([RunConfig.resolve("baseline", "quick",
                                                                                overrides=[*long[:-1], "epochs=8"])])
