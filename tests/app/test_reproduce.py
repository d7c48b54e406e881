"""`amltui reproduce`: planning (reuse / resume / create), the report's statistics, idempotent reruns."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from amltui.app.results.report import Cell, Row
from amltui.app.results.reproduce import plan, reading
from amltui.app.runs.folders import create_run
from amltui.app.runs.states import set_status
from amltui.app.runs.store import Store
from amltui.cli import app
from core.config import VARIANTS, RunConfig
from tests.helpers import tiny_items, tiny_sets

runner = CliRunner()
SMALLER = dict(train_subset=120, test_subset=40, batch_size=40, pgd_steps=2)  # than TINY: a plan is many runs


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


@pytest.mark.slow
def test_reproduce_writes_the_report_and_a_rerun_reuses_everything(tmp_path):
    args = ["reproduce", "--dataset", "synthetic", "--seeds", "0", "--variants", "baseline,ml_sa_ia", "--epochs", "1",
            "--runs-dir", str(tmp_path), *tiny_sets(**SMALLER, eval_ia=True)]
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
    # checks (a), (c), (d) and A_AA ran by default on a stated subset (test_subset 40 < the default 200)
    for record in Store(tmp_path).all():
        assert record["checks"]["scope"] == "cheap" and record["checks"]["n"] == 40
        assert record["metrics_n"]["A_AA"] == 40
    aa_line = next(line for line in report.splitlines() if line.startswith("A_AA: AutoAttack"))
    assert "(n=40; `reproduce`'s default set)" in report and "n=40" in aa_line and "100 it." in aa_line
    caches = {i: (tmp_path / i / "robustness" / "cache.json").read_text() for i in ids}

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "2 finished (reused)" in second.output and "0 to start" in second.output
    assert {r["id"] for r in Store(tmp_path).all()} == ids  # nothing new was created
    # nothing was measured again: every cache entry (with its time stamp) is as the first run left it
    assert {i: (tmp_path / i / "robustness" / "cache.json").read_text() for i in ids} == caches


def _scale_logits(checkpoint, factor: float) -> None:
    """Multiply the classifier's weights and bias: the same predictions, saturated softmax, vanishing gradients."""
    import torch

    state = torch.load(checkpoint, weights_only=True)
    for key in ("classifier.weight", "classifier.bias"):
        state["model"][key] = state["model"][key] * factor
    torch.save(state, checkpoint)


def _quantize_inputs(monkeypatch) -> None:
    """The robustness evaluation's model sees its input rounded to 5 gray levels (zero input gradient)."""
    import dataclasses

    import amltui.app.science.robustness as robustness
    from tests.torch_fakes import Quantized

    real = robustness.load_run_model

    def load(*args, **kwargs):
        loaded = real(*args, **kwargs)
        return dataclasses.replace(loaded, model=Quantized(loaded.model).eval())

    monkeypatch.setattr(robustness, "load_run_model", load)


@pytest.mark.slow
@pytest.mark.parametrize("masking", ["scaled_logits", "quantized_input"])
def test_the_report_flags_a_model_that_masks_pgd_too(tmp_path, monkeypatch, masking):
    """Logits × 1e4 or a quantized input defeat FGSM and PGD alike (no gradient-masking flag); checks (a), (c)
    catch it."""
    small = ["arch=small", "train_subset=1000", "test_subset=200", "batch_size=64", "lr=3e-3", "threads=1",
             "eval_ia=false", "pgd_steps=10", "monitor_pgd=0"]  # real digits: a model well above chance
    args = ["reproduce", "--dataset", "mnist-sample", "--seeds", "0", "--variants", "baseline", "--epochs", "3",
            "--robust-subset", "40", "--no-autoattack", "--runs-dir", str(tmp_path),
            *[a for s in small for a in ("--set", s)]]
    assert runner.invoke(app, [*args, "--no-robust-checks"]).exit_code == 0  # train only
    (record,) = Store(tmp_path).all()
    assert "checks" not in record
    if masking == "scaled_logits":
        _scale_logits(tmp_path / record["id"] / "checkpoint.pt", 1e4)
        evaluated = runner.invoke(app, ["eval", record["id"], "--runs-dir", str(tmp_path)])
        assert evaluated.exit_code == 0, evaluated.output
        masked = Store(tmp_path).get(record["id"])
        assert "gradient_masking" not in masked["flags"]  # FGSM and PGD are fooled alike: the flag sees no gap
    else:
        _quantize_inputs(monkeypatch)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    checked = Store(tmp_path).get(record["id"])
    failed = {r["flag"] for r in checked["checks"]["results"] if r["passed"] is False}
    assert failed & {"check_large_eps", "check_black_box"}, checked["checks"]["summary"]
    assert "check_fgsm_gt_pgd" not in failed  # (d), the flag's comparison at its threshold, sees nothing
    (report_md,) = (tmp_path / "reports").glob("reproduce-mnist-sample-quick*/report.md")  # named by its sizes
    report = report_md.read_text()
    row = next(line for line in report.split("## Further metrics")[1].splitlines() if line.startswith("| baseline"))
    assert "⚠" in row.split("|")[3]  # the A_PGD cell
    assert "A_PGD is not evidence of robustness" in report and "FAILED check_" in report
    table1 = next(line for line in report.split("## Table 1")[1].splitlines() if line.startswith("| baseline"))
    assert "⚠" in table1


@pytest.mark.slow
def test_an_interrupted_reproduce_resumes_its_runs(tmp_path):
    args = ["reproduce", "--dataset", "synthetic", "--seeds", "0", "--variants", "baseline", "--epochs", "2",
            "--runs-dir", str(tmp_path), *tiny_sets(**SMALLER)]
    store = Store(tmp_path)
    config = RunConfig.resolve("baseline", "quick", seed=0, dataset="synthetic", epochs=2,
                               overrides=tiny_items(**SMALLER))
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


def test_a_robust_subset_below_one_is_refused_before_anything_is_written(tmp_path):
    out = runner.invoke(app, ["reproduce", "--dataset", "synthetic", "--robust-subset", "0", "--runs-dir",
                              str(tmp_path / "runs")])
    assert out.exit_code == 2 and "--robust-subset 0" in out.output and "--no-robust-checks" in out.output
    assert not (tmp_path / "runs").exists()


def test_reproduces_at_different_sizes_get_different_report_folders():
    from amltui.app.results.reproduce import report_folder_name

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


@pytest.mark.slow
def test_a_long_robustness_step_is_estimated_and_needs_yes_without_a_terminal(tmp_path, monkeypatch):
    from amltui.app.science import robustness

    monkeypatch.setattr(robustness, "CONFIRM_OVER_S", 0.0)  # every step counts as long: no long run needed
    args = ["reproduce", "--dataset", "synthetic", "--seeds", "0", "--variants", "baseline", "--epochs", "1",
            "--runs-dir", str(tmp_path), *tiny_sets(**SMALLER)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2, refused.output
    assert "projected to take about" in refused.output and "pass --yes" in refused.output
    (record,) = Store(tmp_path).all()
    assert record["status"] == "done" and "checks" not in record and "A_AA" not in record["metrics"]
    started = runner.invoke(app, [*args, "--yes"])  # the trained run is reused; the step runs after its estimate
    assert started.exit_code == 0, started.output
    assert "projected to take about" in started.output and "0 to start" in started.output
    (record,) = Store(tmp_path).all()
    assert record["checks"]["scope"] == "cheap" and "A_AA" in record["metrics"]
