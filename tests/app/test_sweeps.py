"""Sweeps without training: grid parsing and expansion, the manifest, the sweep table and the frontier figure."""

from __future__ import annotations

import csv
import io

import pytest
from matplotlib.container import ErrorbarContainer

from amltui.app.results.frontier import frontier_figure, half_width, pareto_front, points_of
from amltui.app.results.report import Cell
from amltui.app.results.sweep_table import sweep_rows, sweep_table
from amltui.app.runs import sweeps
from amltui.termplot.frontier import render_frontier
from core.config import RunConfig


# ---- grids ---------------------------------------------------------------------------------------------------
def test_lists_and_ranges_are_typed_and_exact():
    grid = sweeps.parse_grid(["lambda_ia=0.25,0.5,1", "lr=1e-4:1e-2:log:5", "eps_s=0:1:step:0.1",
                              "margin=0.1:0.2:3", "epochs=2,4"])
    assert grid["lambda_ia"] == [0.25, 0.5, 1.0]
    assert grid["lr"] == [0.0001, 0.000316, 0.001, 0.00316, 0.01]
    assert grid["eps_s"][3] == 0.3 and len(grid["eps_s"]) == 11 and grid["eps_s"][-1] == 1.0
    assert grid["margin"] == [0.1, 0.15, 0.2]
    assert grid["epochs"] == [2, 4] and all(type(v) is int for v in grid["epochs"])
    texts = [" ".join(p) for p in sweeps.points({"eps_s": grid["eps_s"], "lr": grid["lr"][:2]})]
    assert texts[:2] == ["eps_s=0 lr=0.0001", "eps_s=0 lr=0.000316"] and "eps_s=0.3 lr=0.0001" in texts
    assert not any("0000000" in t for t in texts)


def test_string_and_int_grids_of_the_triplet_keys():
    grid = sweeps.parse_grid(["distance=abs_cos,cos", "embed_dim=4,64"])
    assert grid == {"distance": ["abs_cos", "cos"], "embed_dim": [4, 64]}

    def resolve(variant, seed, point):
        return RunConfig.resolve(variant, "quick", overrides=point, seed=seed, dataset="synthetic")

    configs = sweeps.sweep_configs(["ml_sa"], [0], grid, resolve)
    assert {(c.distance, c.embed_dim) for c in configs} == {(d, e) for d in ("abs_cos", "cos") for e in (4, 64)}
    with pytest.raises(sweeps.GridError, match="not one of: abs_cos, cos"):
        sweeps.parse_grid(["distance=abs_cos,l2"])


@pytest.mark.parametrize("item, words", [
    (["lambda_a=0.1,0.2"], ["unknown config key 'lambda_a'", "did you mean", "lambda_ia"]),
    (["eps_s=0.1,2"], ["eps_s=2.0 is out of range", "[0.0, 1.0]"]),
    (["miner=hardest,nearest"], ["not one of", "batch_hard"]),
    (["epochs=1:2:step:0.5"], ["epochs", "not a valid int"]),
    (["seed=0,1"], ["--seeds"]),
    (["variant=ml_sa"], ["--variants"]),
    (["lr=1e-4:1e-2:log"], ["START:STOP:COUNT"]),
    (["lr=0:1e-2:log:3"], ["log range needs START and STOP > 0"]),
    (["lr=1:0:step:0.1"], ["STEP > 0 and STOP ≥ START"]),
    (["lr=1e-3,1e-3"], ["given twice"]),
    (["lr=1e-3", "lr=1e-4"], ["given twice"]),
    (["lr"], ["KEY=V1,V2"]),
])
def test_bad_grids_name_the_problem_and_the_fix(item, words):
    with pytest.raises(sweeps.GridError) as info:
        sweeps.parse_grid(item)
    for word in words:
        assert word in str(info.value)


def test_every_point_is_resolved_and_a_refused_point_names_variant_and_point():
    grid = sweeps.parse_grid(["lambda_ia=0.25,1", "eps_s=0.1,0.2"])

    def resolve(variant, seed, point):
        return RunConfig.resolve(variant, "quick", overrides=point, seed=seed, dataset="synthetic")

    configs = sweeps.sweep_configs(["ml_sa_ia"], [0, 1, 2], grid, resolve)
    assert len(configs) == 12
    assert {(c.lambda_ia, c.eps_s, c.seed) for c in configs} == {
        (lam, eps, s) for lam in (0.25, 1.0) for eps in (0.1, 0.2) for s in (0, 1, 2)}
    assert "4 grid point(s)" in sweeps.describe(grid, ["ml_sa_ia"], [0, 1, 2])
    with pytest.raises(sweeps.GridError, match="variant ml_sa_ia at grid point lambda_ia=0: .*lambda_ia > 0"):
        sweeps.sweep_configs(["ml_sa_ia"], [0], sweeps.parse_grid(["lambda_ia=0,1"]), resolve)
    with pytest.raises(sweeps.GridError, match="both in --set and --grid"):
        sweeps.check_no_clash(grid, ["eps_s=0.3"])
    assert sweeps.needs_confirmation(51) and not sweeps.needs_confirmation(50)


def test_sweep_names_and_the_manifest(tmp_path):
    with pytest.raises(sweeps.GridError, match="invalid sweep name"):
        sweeps.check_name("../x")
    name = sweeps.default_name({"lambda_ia": [1.0]}, now=0)
    assert name.startswith("sweep-lambda_ia-") and sweeps.check_name(name) == name
    sweeps.save_manifest(tmp_path, "s1", {"lambda_ia": [0.5, 1.0]}, ["a", "b"])
    sweeps.save_manifest(tmp_path, "s1", {}, ["b", "c"])  # a second command adds runs (e.g. the baselines)
    manifest = sweeps.load_manifest(tmp_path, "s1")
    assert manifest["runs"] == ["a", "b", "c"] and manifest["keys"] == ["lambda_ia"]
    records = [{"id": "a"}, {"id": "c"}, {"id": "d", "sweep": "s1"}, {"id": "e", "sweep": "other"}]
    chosen, keys = sweeps.sweep_records(records, tmp_path, "s1")
    assert [r["id"] for r in chosen] == ["a", "c", "d"] and keys == ["lambda_ia"]
    with pytest.raises(sweeps.GridError, match="did you mean 's1'"):
        sweeps.sweep_records(records, tmp_path, "s1x")


# ---- records for the table and the frontier --------------------------------------------------------------------
def record(variant: str, seed: int, metrics: dict[str, float], **overrides: float) -> dict:
    config = RunConfig.resolve(variant, "quick", overrides=[f"{k}={v}" for k, v in overrides.items()], seed=seed)
    return {"id": f"{variant}-{seed}-{'-'.join(map(str, overrides.values()))}", "status": "done", "variant": variant,
            "seed": seed, "dataset": config.dataset, "preset": "quick", "fingerprint": "f" * 16,
            "code_version": "v", "group": config.group_key(), "context": config.context_key(),
            "config": config.to_dict(), "config_diff": config.diff_from_preset(), "metrics": metrics,
            "metrics_n": {m: 1000 for m in metrics}, "created": f"t{seed}", "ended": f"t{seed}"}


# A_PGD, A_IA per (variant, lambda_ia) and seed: λ=1 trades A_PGD for A_IA; λ=0.25 is dominated by λ=0.5.
DATA = {("baseline", 0.0): [(20, 30), (22, 32), (24, 34)],
        ("ml_sa", 0.0): [(70, 40), (72, 41), (74, 42)],
        ("ml_sa_ia", 0.25): [(60, 45), (61, 46), (62, 47)],
        ("ml_sa_ia", 0.5): [(68, 50), (70, 52), (72, 54)],
        ("ml_sa_ia", 1.0): [(50, 70), (51, 71), (55, 72)]}


@pytest.fixture
def records() -> list[dict]:
    out = []
    for (variant, lam), values in DATA.items():
        for seed, (pgd, ia) in enumerate(values):
            extra = {"lambda_ia": lam} if variant == "ml_sa_ia" else {}
            out.append(record(variant, seed, {"A_orig": 95.0 + seed, "A_PGD": float(pgd), "A_IA": float(ia)},
                              **extra))
    return out


def test_sweep_table_has_a_row_per_point_sorted_with_paired_deltas(records):
    rows = sweep_rows(records, ["lambda_ia"])
    assert [(r.variant, r.setting) for r in rows] == [
        ("baseline", "lambda_ia=0 (paper's baseline)"), ("ml_sa", "lambda_ia=0 (paper's ml_sa)"),
        ("ml_sa_ia", "lambda_ia=0.25"), ("ml_sa_ia", "lambda_ia=0.5 (paper's ml_sa_ia)"),
        ("ml_sa_ia", "lambda_ia=1")]
    lam1 = rows[-1]
    assert lam1.cells["A_PGD"].values == [50, 51, 55] and lam1.cells["A_IA"].n == 3
    assert lam1.deltas["A_IA"].values == [40, 39, 38]  # paired with the baseline of the same seed
    md = sweep_table(records, ["lambda_ia"], "md", "lam")
    assert md.startswith("Sweep `lam`") and "52.00 ± 2.00 (n=3; SE_bin" in md and "+39.00 ± 1.00 (n=3)" in md
    rows_csv = list(csv.DictReader(io.StringIO(sweep_table(records, ["lambda_ia"], "csv", "lam"))))
    assert [r["setting"] for r in rows_csv][2:] == ["lambda_ia=0.25", "lambda_ia=0.5 (paper's ml_sa_ia)",
                                                      "lambda_ia=1"]
    assert rows_csv[4]["A_PGD_mean"] == "52.0000" and rows_csv[4]["delta_A_IA_mean"] == "39.0000"
    assert "lambda\\_ia=0.25" in sweep_table(records, ["lambda_ia"], "latex", "lam")


def test_pareto_front_and_intervals(records):
    points = points_of(sweep_rows(records, ["lambda_ia"]))
    front = pareto_front(points)
    assert [p.label for p in front] == ["ml_sa_ia lambda_ia=1", "ml_sa_ia lambda_ia=0.5", "ml_sa lambda_ia=0"]
    assert [p.paper for p in points] == [True, True, False, True, False]
    cell = Cell([68.0, 70.0, 72.0])
    assert half_width(cell, "std") == pytest.approx(2.0)
    assert half_width(cell, "ci95") == pytest.approx(4.303 * 2.0 / 3 ** 0.5)
    assert half_width(Cell([1.0]), "std") is None


def test_frontier_figure_draws_each_point_with_its_error_bars_and_the_front(records):
    points = points_of(sweep_rows(records, ["lambda_ia"]), interval="ci95")
    fig = frontier_figure(points, interval="ci95")
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 5
    for bar, p in zip(bars, points, strict=True):
        (x, y), = bar.lines[0].get_xydata()
        assert (x, y) == pytest.approx((p.x, p.y))
        xseg, yseg = (coll.get_segments()[0] for coll in bar.lines[2])
        assert [v[0] for v in xseg] == pytest.approx([p.x - p.x_err, p.x + p.x_err])
        assert [v[1] for v in yseg] == pytest.approx([p.y - p.y_err, p.y + p.y_err])
    lam1 = points[-1]
    assert lam1.y_err == pytest.approx(4.303 * 1.0 / 3 ** 0.5)  # std of 70, 71, 72 = 1
    (front,) = [line for line in ax.get_lines() if line.get_gid() == "pareto-front"]
    assert front.get_xydata().ravel().tolist() == pytest.approx([52, 71, 70, 52, 72, 41])
    (paper,) = [c for c in ax.collections if c.get_gid() == "paper-variants"]
    assert len(paper.get_offsets()) == 3
    assert "95% t-interval" in ax.get_legend().get_title().get_text()
    texts = [t.get_text() for t in ax.texts]
    assert "lambda_ia=0.25" in texts and "n = 3 per point" in fig.texts[0].get_text()


def test_terminal_frontier_numbers_each_point_and_marks_the_front(records):
    points = points_of(sweep_rows(records, ["lambda_ia"]))
    lines = [line.plain for line in render_frontier(points, "A_PGD", "A_IA", width=70, height=14)]
    plot = "\n".join(lines[1:14])
    for mark in "12345":
        assert plot.count(mark) >= 1
    legend = lines[-5:]
    assert legend[4].startswith("5 ml_sa_ia lambda_ia=1: A_PGD 52.00 ± 2.65, A_IA 71.00 ± 1.00 (n=3)")
    assert legend[4].endswith("◆") and "★" in legend[0] and "◆" not in legend[2]


@pytest.mark.slow
def test_frontier_png_for_reproduces_three_variants(records, tmp_path):
    from amltui.app.results.frontier import frontier_png

    plain = [r for r in records if r["variant"] != "ml_sa_ia" or r["config"]["lambda_ia"] == 0.5]
    path = frontier_png(plain, tmp_path / "frontier.png", keys=[])
    assert path == tmp_path / "frontier.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = points_of(sweep_rows(plain, []))
    assert [p.label for p in points] == ["baseline", "ml_sa", "ml_sa_ia"] and all(p.paper for p in points)
    no_ia = [{**r, "metrics": {"A_PGD": r["metrics"]["A_PGD"]}} for r in plain]
    assert frontier_png(no_ia, tmp_path / "none.png", keys=[]) is None and not (tmp_path / "none.png").exists()


def test_a_large_grid_asks_first_and_a_no_queues_nothing(tmp_path):
    from typer.testing import CliRunner

    from amltui.app import service
    from amltui.app.runs.store import Store
    from amltui.cli import app

    big = ["lr=1e-4:1e-2:log:17"]  # 17 points × 3 seeds = 51 runs
    request = service.LaunchRequest(variants=["ml_sa"], seeds=[0, 1, 2], dataset="synthetic", grid=big, sweep="big")
    plan = service.plan_launch(Store(tmp_path), request)
    assert len(plan.configs) == 51 and plan.sweep == "big" and "51 runs" in plan.sweep_line
    assert sweeps.needs_confirmation(51) and not sweeps.needs_confirmation(50)
    result = CliRunner().invoke(app, ["run", "--seeds", "0-2", "--dataset", "synthetic", "--grid", big[0], "--sweep",
                                      "big", "--detach", "--runs-dir", str(tmp_path)], input="n\n")
    assert result.exit_code == 2 and "queue 51 runs?" in result.output and "nothing queued" in result.output
    assert Store(tmp_path).all() == []  # refused: no run, no manifest
    assert not (tmp_path / "reports" / "sweeps" / "big.json").exists()
