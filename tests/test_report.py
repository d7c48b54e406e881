"""Results tables: seed aggregation, pairing with the baseline, honest separation of unlike runs, formats."""

from __future__ import annotations

import csv
import io
import statistics

from amltui.report import aggregate, render


def rec(run_id, variant, seed, a_orig, a_sa, *, fp="fp1", code="0.1.0", lr=1e-3, a_ia=None, **extra):
    metrics = {"A_orig": a_orig, "A_SA": a_sa, "A_PGD": a_sa - 10}
    if a_ia is not None:
        metrics["A_IA"] = a_ia
    config = {"variant": variant, "seed": seed, "lr": lr, "dataset": "mnist", "preset": "quick"}
    return {"id": run_id, "status": "done", "variant": variant, "seed": seed, "dataset": "mnist", "preset": "quick",
            "fingerprint": fp, "code_version": code, "group": f"{variant}-{lr}", "context": f"ctx-{lr}",
            "config_diff": {} if lr == 1e-3 else {"lr": lr}, "config": config, "metrics": metrics, **extra}


RUNS = [
    rec("b0", "baseline", 0, 99.0, 90.0), rec("b1", "baseline", 1, 98.0, 92.0), rec("b2", "baseline", 2, 97.0, 91.0),
    rec("m0", "ml_sa", 0, 99.5, 93.0), rec("m1", "ml_sa", 1, 98.5, 94.0),  # seed 2 missing: pairs over 0 and 1
    rec("x", "ml_sa", 3, 10.0, 10.0, status="failed"),  # not finished: never in a table
]


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
    assert ml.deltas["A_orig"].n == 3
    by_seed = aggregate(RUNS, group_by=["variant", "seed"])
    assert len(by_seed) == 5 and all(r.cells["A_orig"].n == 1 for r in by_seed)


def test_markdown_has_the_papers_column_order_and_traceable_rows():
    runs = [dict(r, metrics={**r["metrics"], "A_IA": 80.0, "A_IA_target": 12.0}) for r in RUNS]
    text = render(aggregate(runs), "md", with_runs=True)
    header = next(line for line in text.splitlines() if line.startswith("| Variant"))
    order = [header.index(c) for c in ("A_orig", "A_SA", "A_IA", "A_IA→target", "A_PGD")]
    assert order == sorted(order)
    assert "98.00 ± 1.00 (n=3)" in text
    assert "+0.50 ± 0.00 (n=2)" in text
    assert "b0, b1, b2" in text and "m0, m1" in text


def test_csv_and_latex():
    parsed = list(csv.DictReader(io.StringIO(render(aggregate(RUNS), "csv", with_runs=True))))
    assert parsed[0]["variant"] == "baseline" and float(parsed[0]["A_orig_mean"]) == 98.0
    assert parsed[0]["A_orig_n"] == "3" and parsed[1]["delta_A_SA_n"] == "2" and parsed[1]["runs"] == "m0 m1"
    tex = render(aggregate(RUNS), "latex")
    assert "ml\\_sa" in tex and "$98.00 \\pm 1.00$ (3)" in tex and tex.strip().endswith("\\end{tabular}")


def test_a_single_seed_has_no_spread():
    text = render(aggregate([rec("s", "ml_sa", 0, 90.0, 80.0)]), "md")
    assert "90.00 ± – (n=1)" in text


def test_no_finished_runs():
    assert "No finished runs" in render(aggregate([]), "md")
