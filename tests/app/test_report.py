"""Results tables: seed aggregation, pairing with the baseline, honest separation of unlike runs, formats."""

from __future__ import annotations

import csv
import io
import statistics

import pytest

from amltui.app.results.report import NO_BASELINE, aggregate, render
from tests.helpers import RUNS, rec


def test_cells_are_mean_and_sample_std_over_seeds_with_n():
    rows = aggregate(RUNS)
    assert [r.variant for r in rows] == ["baseline", "ml_sa"]
    base, ml = rows
    assert base.cells["A_orig"].n == 3 and base.cells["A_orig"].mean == 98.0
    assert base.cells["A_orig"].std == statistics.stdev([99.0, 98.0, 97.0])
    assert ml.cells["A_SA"].values == [93.0, 94.0] and ml.seeds == [0, 1]
    assert base.cells["A_IA"].n == 0  # no invariance metric yet: an empty cell, not a zero


def test_paired_differences_use_only_the_seeds_both_have():
    ml = aggregate(RUNS)[1]
    delta = ml.deltas["A_orig"]
    assert delta.values == [0.5, 0.5] and delta.n == 2
    assert ml.deltas["A_SA"].values == [3.0, 2.0]
    assert delta.run_ids == ["m0−b0", "m1−b1"]


def test_runs_differing_in_data_code_or_config_are_never_pooled_silently():
    runs = RUNS + [rec("c0", "ml_sa", 0, 50.0, 40.0, code="0.2.0"), rec("f0", "ml_sa", 0, 60.0, 40.0, fp="fp2"),
                   rec("l0", "ml_sa", 0, 70.0, 40.0, lr=3e-4)]
    rows = aggregate(runs)
    ml_rows = [r for r in rows if r.variant == "ml_sa"]
    assert len(ml_rows) == 4 and sorted(r.cells["A_orig"].n for r in ml_rows) == [1, 1, 1, 2]
    settings = [r.setting for r in ml_rows]
    assert any("lr=0.0003" in s for s in settings)
    assert any("data fp2" in s for s in settings) and any("code 0.2.0" in s for s in settings)
    # A run with another lr is not paired with the lr=1e-3 baseline.
    assert next(r for r in ml_rows if "lr=0.0003" in r.setting).deltas == {}


def test_explicit_group_by_pools_and_says_what_differs():
    runs = RUNS + [rec("l2", "ml_sa", 2, 97.0, 90.0, lr=3e-4)]
    rows = aggregate(runs, group_by=["variant", "dataset"])
    ml = next(r for r in rows if r.variant == "ml_sa")
    assert ml.cells["A_orig"].n == 3 and "pools runs differing in: lr" in ml.setting
    # l2 (lr 3e-4) has no baseline of its own setting: it is never paired with the lr 1e-3 baseline b2.
    assert ml.deltas["A_orig"].n == 2 and ml.deltas["A_orig"].run_ids == ["m0−b0", "m1−b1"]
    by_seed = aggregate(RUNS, group_by=["variant", "seed"])
    assert len(by_seed) == 5 and all(r.cells["A_orig"].n == 1 for r in by_seed)


def test_markdown_has_the_papers_column_order_and_traceable_rows():
    runs = [dict(r, metrics={**r["metrics"], "A_IA": 80.0, "A_IA_target": 12.0}) for r in RUNS]
    text = render(aggregate(runs), "md", with_runs=True)
    header = next(line for line in text.splitlines() if line.startswith("| Variant"))
    order = [header.index(c) for c in ("A_orig", "A_SA", "A_IA", "A_IA→target", "A_PGD")]
    assert order == sorted(order)
    assert "98.00 ± 1.00 (n=3; SE_bin 0.44)" in text  # √(0.98·0.02/1000) = 0.44 points
    assert "+0.50 (no spread measured, n=2)" in text  # equal differences: no spread, not "significant"
    assert "s0 b0, s1 b1, s2 b2" in text and "s0 m0, s1 m1" in text


def test_csv_and_latex():
    parsed = list(csv.DictReader(io.StringIO(render(aggregate(RUNS), "csv", with_runs=True))))
    assert parsed[0]["variant"] == "baseline" and float(parsed[0]["A_orig_mean"]) == 98.0
    assert parsed[0]["A_orig_n"] == "3" and parsed[1]["delta_A_SA_n"] == "2" and parsed[1]["runs"] == "m0 m1"
    tex = render(aggregate(RUNS), "latex")
    assert "ml\\_sa" in tex and "\\end{tabular}" in tex
    assert "$98.00$\\\\{\\scriptsize $\\pm 1.00$ (3)}\\\\{\\scriptsize SE 0.44}" in tex
    assert parsed[0]["A_orig_se_binom"] == "0.4427" and parsed[0]["A_PGD_se_binom"] == "1.2406"
    assert parsed[0]["A_orig_test_images"] == "1000" and "PGD-40" in parsed[0]["pgd"]


def test_a_single_seed_has_no_spread():
    text = render(aggregate([rec("s", "ml_sa", 0, 90.0, 80.0)]), "md")
    assert "| 90.00 (n=1; SE_bin 0.95) |" in text and "±" not in text.split("\n\n")[1]  # no "± –" placeholder


def test_the_binomial_standard_error_uses_the_fewest_images_and_needs_a_count():
    from amltui.app.results.report import Cell

    assert Cell([80.0, 82.0], images=[1000, 10000]).se_binom == pytest.approx(100 * (0.81 * 0.19 / 1000) ** 0.5)
    assert Cell([100.0], images=[200]).se_binom == 0.0
    assert Cell([80.0]).se_binom is None and Cell([80.0]).text(se=True) == "80.00 (n=1)"  # old records
    md = render(aggregate([rec("s", "ml_sa", 0, 90.0, 80.0)]), "md")
    assert "SE_bin: the binomial standard error" in md and "does not reduce" in md


def test_dataset_and_setting_columns_only_when_rows_differ_in_them():
    one = render(aggregate(RUNS), "md")
    header = next(line for line in one.splitlines() if line.startswith("| Variant"))
    assert "Dataset" not in header and "Setting" not in header
    assert "All rows: dataset mnist, setting quick." in one.splitlines()[0]
    tex = render(aggregate(RUNS), "latex")
    assert "Setting" not in tex and "All rows: dataset mnist, setting quick." in tex
    mixed = render(aggregate(RUNS + [rec("l0", "ml_sa", 0, 70.0, 40.0, lr=3e-4)]), "md")
    header = next(line for line in mixed.splitlines() if line.startswith("| Variant"))
    assert header.startswith("| Variant | Setting | A_orig") and "Dataset" not in header
    assert "All rows: dataset mnist." in mixed.splitlines()[0]
    assert "| ml_sa | quick; lr=0.0003 | 70.00 (n=1; SE_bin 1.45) |" in mixed


def test_no_finished_runs():
    assert "No finished runs" in render(aggregate([]), "md")


def test_a_repeated_seed_counts_once_latest_wins_and_is_listed():
    runs = RUNS + [rec("b0-again", "baseline", 0, 95.0, 90.0, ended="2030-01-01T00:00:00Z")]
    base = aggregate(runs)[0]
    assert base.cells["A_orig"].n == 3 and base.seeds == [0, 1, 2]  # not n=4 with seeds 0,0,1,2
    assert base.cells["A_orig"].run_ids == ["b0-again", "b1", "b2"]  # the latest run of seed 0 counts
    assert [r["id"] for r in base.repeats] == ["b0"]
    text = render(aggregate(runs), "md", with_runs=True)
    assert "repeats not counted: s0 b0" in text and "b0 (superseded by b0-again)" in text
    ml = aggregate(runs)[1]
    assert ml.deltas["A_orig"].run_ids == ["m0−b0-again", "m1−b1"]  # paired with the run that counts


def test_an_ablation_baseline_is_its_own_row_and_never_the_reference():
    ablation = [rec(f"a{s}", "baseline", s, 50.0 + s, 60.0, weights={"w_clean": 0.0, "w_adv": 1.0}) for s in (0, 1)]
    rows = aggregate(ablation + RUNS)
    baselines = [r for r in rows if r.variant == "baseline"]
    assert len(baselines) == 2
    plain = next(r for r in baselines if not r.deltas and not r.pairing)  # the reference: nothing subtracted
    abl = next(r for r in baselines if r is not plain)
    assert [r["id"] for r in plain.runs] == ["b0", "b1", "b2"]
    assert abl.deltas["A_orig"].run_ids == ["a0−b0", "a1−b1"]  # the ablation is compared with the baseline
    ml = next(r for r in rows if r.variant == "ml_sa")
    assert ml.deltas["A_orig"].run_ids == ["m0−b0", "m1−b1"] and ml.deltas["A_orig"].values == [0.5, 0.5]
    # Only the ablation present: no reference exists, and the tables say so instead of pairing with it.
    alone = aggregate(ablation + RUNS[3:5])
    ml = next(r for r in alone if r.variant == "ml_sa")
    assert ml.deltas == {} and ml.pairing == NO_BASELINE
    assert NO_BASELINE in render(alone, "md")


def test_each_baseline_seed_is_paired_once_per_row():
    runs = RUNS + [rec("l0", "ml_sa", 0, 70.0, 40.0, lr=3e-4), rec("l0b", "baseline", 0, 60.0, 40.0, lr=3e-4)]
    rows = aggregate(runs, group_by=["variant"])
    ml = next(r for r in rows if r.variant == "ml_sa")
    assert sorted(ml.deltas["A_orig"].run_ids) == ["l0−l0b", "m0−b0", "m1−b1"]
    assert next(r for r in rows if r.variant == "baseline").deltas == {}


def test_tables_say_on_how_many_images_and_mark_the_digit_table_on_other_data():
    fashion = [rec(f"f{s}", "ml_sa", s, 80.0, 70.0, dataset="fashion-mnist", a_ia=50.0,
                   n={"A_orig": 10000, "A_SA": 10000, "A_IA": 10000, "A_PGD": 1000}) for s in (0, 1)]
    rows = aggregate(fashion)
    md = render(rows, "md")
    assert "A_orig 10000, A_SA 10000, A_IA 10000, A_PGD 1000" in md
    assert "50.00 ± 0.00 (n=2; SE_bin 0.50)†" in md and "60.00 ± 0.00 (n=2; SE_bin 1.55)" in md
    assert "digit target table applied to non-digit data" in md
    assert "PGD-40 (L∞ ε 0.3, step α 0.01" in md
    tex = render(rows, "latex")
    assert "n_{img}=1000" in tex and "dagger" in tex
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert parsed[0]["A_PGD_test_images"] == "1000" and parsed[0]["ia_note"].startswith("digit target table")
    digits = render(aggregate(RUNS), "md")
    assert "†" not in digits and "Every column is measured on 1000 test images" in digits


def test_a_setting_writes_config_values_as_config_json_does():
    run = rec("e0", "baseline", 0, 90.0, 80.0)
    run["config_diff"] = {"eval_ia": False, "pgd_eps": None, "lr": 0.0}
    assert aggregate([run])[0].setting == "quick; eval_ia=false; lr=0; pgd_eps=null"
