"""Issue 9 end to end, with real tiny runs: one run per seed, the right baseline, refused filters, domains."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from amltui.app.results.report import aggregate
from amltui.app.runs.store import Store
from amltui.cli import app
from core.config import RunConfig
from tests.helpers import tiny_items, tiny_sets

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def run_tiny(runs: Path, *extra: str, variant: str = "ml_sa", seed: int = 0, eval_ia: bool = False):
    sets = tiny_sets(eval_ia=eval_ia)
    return invoke("run", "--variant", variant, "--seed", str(seed), "--dataset", "synthetic", "--epochs", "1",
                  "--runs-dir", str(runs), *sets, *extra)


@pytest.mark.slow
def test_the_same_seed_twice_is_reused_and_a_repeat_counts_once(tmp_path):
    first = run_tiny(tmp_path, eval_ia=True)
    assert first.exit_code == 0, first.output
    (record,) = Store(tmp_path).all()
    # The fast invariance set measured its agreement with the exact search (here on all 128 test queries).
    agreement = record["inv_agreement"]["test"]
    assert agreement["sample"] == 128 and 0.0 <= agreement["same_neighbour"] <= 1.0
    assert record["target_table_note"] == "digit target table applied to non-digit data"
    assert record["pgd"] == {"steps": 3, "alpha": 0.01, "eps": 0.1}

    again = run_tiny(tmp_path, eval_ia=True)
    assert again.exit_code == 0, again.output
    assert f"reusing finished run {record['id']}" in again.output and "--repeat" in again.output
    assert len(Store(tmp_path).all()) == 1  # nothing new was created
    # The dashboard's launch form goes through the same check.
    from amltui.tui.actions import LaunchRequest, launch

    form = launch(tmp_path, LaunchRequest(variants=["ml_sa"], seeds=[0], dataset="synthetic",
                                          overrides=tiny_items(eval_ia=True, epochs=1), gpus="none"))
    assert form.queued == [] and f"reusing finished run {record['id']}" in form.message()
    assert len(Store(tmp_path).all()) == 1

    repeated = run_tiny(tmp_path, "--repeat", eval_ia=True)
    assert repeated.exit_code == 0, repeated.output
    records = Store(tmp_path).all()
    assert len(records) == 2
    latest = max(records, key=lambda r: r["ended"])
    (row,) = aggregate(records)
    assert row.cells["A_orig"].n == 1 and row.seeds == [0]  # not n=2 with seeds 0,0 and a fake zero spread
    assert row.cells["A_orig"].run_ids == [latest["id"]] and [r["id"] for r in row.repeats] == [record["id"]]

    md = invoke("export", "--with-runs", "--runs-dir", str(tmp_path)).output
    assert "(n=1; SE_bin" in md and "(n=2" not in md
    assert f"repeats not counted: s0 {record['id']}" in md and f"s0 {latest['id']}" in md
    assert "same neighbour as exact on" in md and "of 128 sampled queries" in md
    assert "Every column is measured on 128 test images" in md and "PGD-3 (L∞ ε 0.1, step α 0.01" in md
    assert "†" in md and "digit target table applied to non-digit data" in md


@pytest.mark.slow
def test_an_ablation_baseline_is_never_the_reference(tmp_path):
    assert run_tiny(tmp_path, variant="baseline").exit_code == 0
    ablation = run_tiny(tmp_path, "--set", "w_clean=0", "--set", "w_adv=1", variant="baseline")
    assert ablation.exit_code == 0, ablation.output
    assert run_tiny(tmp_path, variant="ml_sa").exit_code == 0
    records = Store(tmp_path).all()
    plain_id, ablation_id, ml_id = (r["id"] for r in records)
    rows = aggregate(records)
    ml = next(r for r in rows if r.variant == "ml_sa")
    assert ml.deltas["A_orig"].run_ids == [f"{ml_id}−{plain_id}"]
    abl = next(r for r in rows if r.runs[0]["id"] == ablation_id)
    assert abl.deltas["A_orig"].run_ids == [f"{ablation_id}−{plain_id}"]  # its own row, compared with the plain one
    plain = next(r for r in rows if r.runs[0]["id"] == plain_id)
    assert plain.deltas == {} and plain.pairing == ""
    md = invoke("export", "--runs-dir", str(tmp_path)).output
    paired = md.split("Paired differences")[1]
    assert "w_adv=1; w_clean=0" in paired and "| baseline | synthetic | quick |" not in paired

    # Without the plain baseline, nothing is paired with the ablation: the table says so.
    assert invoke("rm", plain_id, "--yes", "--runs-dir", str(tmp_path)).exit_code == 0
    md = invoke("export", "--runs-dir", str(tmp_path)).output
    assert "no baseline run of the same setting" in md and ablation_id not in md.split("Paired differences")[1]


@pytest.mark.slow
def test_bad_filters_are_refused_with_a_suggestion(tmp_path):
    assert run_tiny(tmp_path).exit_code == 0
    cases = [(("export", "--group-by", "varient"), "did you mean 'variant'"),
             (("export", "--where", "datset=synthetic"), "did you mean 'dataset'"),
             (("export", "--where", "dataset=synthtic"), "did you mean 'synthetic'"),
             (("export", "--where", "seed=zero"), "seed='zero' is not a valid int"),
             (("ls", "--status", "finished"), "valid values: queued, running, done, failed, cancelled"),
             (("ls", "--status", "don"), "did you mean 'done'")]
    for args, message in cases:
        result = invoke(*args, "--runs-dir", str(tmp_path))
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)  # Rich wraps at 80 columns
    # A valid filter that leaves nothing says which filter did it.
    empty = invoke("export", "--where", "variant=ml_sa", "--where", "seed=7", "--runs-dir", str(tmp_path))
    assert empty.exit_code == 0 and "no run matches --where seed=7" in " ".join(empty.output.split())
    listed = invoke("ls", "--status", "failed", "--runs-dir", str(tmp_path)).output
    assert "no run matches --status failed" in " ".join(listed.split())
    # Config keys filter too, with typed values.
    ok = invoke("export", "--format", "csv", "--where", "lr=0.001", "--where", "arch=small", "--runs-dir",
                str(tmp_path))
    assert ok.exit_code == 0 and ok.output.count("ml_sa,synthetic") == 1


@pytest.mark.slow
def test_human_sets_are_refused_for_models_not_trained_on_digits(tmp_path):
    assert run_tiny(tmp_path).exit_code == 0
    (record,) = Store(tmp_path).all()
    refused = invoke("eval", record["id"], "--human-sets", "--runs-dir", str(tmp_path))
    text = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "MNIST digits" in text and "'synthetic'" in text
    assert "human_sets" not in Store(tmp_path).get(record["id"])
    fashion = invoke("reproduce", "--dataset", "fashion-mnist", "--human-sets", "--runs-dir", str(tmp_path / "f"))
    text = " ".join(fashion.output.split())
    assert fashion.exit_code == 2 and "'fashion-mnist'" in text and "MNIST digits" in text
    assert not (tmp_path / "f").exists() or Store(tmp_path / "f").all() == []


def test_the_paper_preset_means_full_mnist_and_the_exact_search(tmp_path):
    config = RunConfig.resolve("ml_sa", "paper")
    assert config.dataset == "mnist" and config.inv_mode == "exact"
    assert RunConfig.resolve("ml_sa", "quick").dataset == "mnist-sample"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("reproduce", "--preset", "paper", "--data-dir", str(empty), "--seeds", "0", "--variants",
                    "baseline", "--runs-dir", str(tmp_path / "runs"))
    text = "".join(result.output.split())  # Rich may break the long path anywhere
    assert result.exit_code == 2 and str(empty) in text and "train-images-idx3-ubyte" in text, result.output
    assert Store(tmp_path / "runs").all() == []
