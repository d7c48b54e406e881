"""The gradient-masking flag: its rule (core/flags.py), the run record, and where it is shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amltui.app.runs.store import Store
from amltui.cli import app
from core.config import RunConfig
from core.flags import CHECKS, GRADIENT_MASKING, Flag, check_run, flags_record, register

runner = CliRunner()
# Real digits, small enough for seconds: 3 epochs of FGSM training at ε 0.2 leave A_SA above A_PGD.
SMALL_SET = ["arch=small", "train_subset=1000", "test_subset=200", "batch_size=64", "eval_batch_size=200", "lr=3e-3",
             "pgd_steps=5", "pgd_alpha=0.08", "threads=1", "eval_ia=false", "monitor_pgd=64", "eps_s=0.2"]


def config(**overrides) -> RunConfig:
    return RunConfig.resolve("baseline", "quick", overrides=[f"{k}={v}" for k, v in overrides.items()])


def epoch(n: int, pgd: float, fgsm: float) -> dict:
    return {"epoch": n, "monitor_A_PGD": pgd, "monitor_A_SA": fgsm, "monitor_A_orig": 95.0}


def test_gap_rule_trips_above_the_threshold_only():
    assert check_run(config(), {"A_SA": 57.1, "A_PGD": 27.1}, []) == []  # gap 30.0 is not > 30
    (flag,) = check_run(config(), {"A_SA": 57.1, "A_PGD": 0.0}, [])
    assert flag.name == GRADIENT_MASKING
    assert flag.numbers["gap"] == pytest.approx(57.1) and flag.numbers["mask_gap"] == 30.0
    assert "57.10" in flag.reasons[0] and "A_SA − A_PGD > 30" in flag.rule
    assert check_run(config(mask_gap=60), {"A_SA": 57.1, "A_PGD": 0.0}, []) == []
    assert check_run(config(mask_rule="off"), {"A_SA": 99.0, "A_PGD": 0.0}, []) == []
    assert check_run(config(mask_rule="collapse"), {"A_SA": 99.0, "A_PGD": 0.0}, []) == []


def test_collapse_rule_needs_pgd_to_fall_while_fgsm_holds():
    history = [epoch(1, 60, 70), epoch(2, 70, 75), epoch(3, 5, 72), epoch(4, 2, 74)]
    (flag,) = check_run(config(mask_rule="collapse"), {}, history)
    assert flag.numbers["collapse_epoch"] == 3 and flag.numbers["monitor_pgd_drop"] == pytest.approx(65)
    assert "epoch 2→3" in flag.reasons[0]
    # FGSM falling with it is a model getting worse, not masking
    falling = [epoch(1, 70, 75), epoch(2, 5, 20)]
    assert check_run(config(mask_rule="collapse"), {}, falling) == []
    # a drop below the threshold is not a collapse
    assert check_run(config(mask_rule="collapse"), {}, [epoch(1, 70, 75), epoch(2, 45, 75)]) == []
    # both rules at once: both reasons
    (both,) = check_run(config(), {"A_SA": 70.0, "A_PGD": 2.0}, history)
    assert len(both.reasons) == 2


def test_with_another_pgd_eps_the_gap_rule_compares_fgsm_and_pgd_at_eps_s():
    # A_SA is FGSM at ε_s 0.1, A_PGD at 0.3: their difference says nothing about masking (issue 22)
    cfg = config(pgd_eps=0.3)
    assert check_run(cfg, {"A_SA": 83.6, "A_PGD": 0.0, "A_PGD_at_eps_s": 80.9}, []) == []
    (flag,) = check_run(cfg, {"A_SA": 83.6, "A_PGD": 0.0, "A_PGD_at_eps_s": 10.0}, [])
    assert flag.reasons == ["A_SA 83.60 − PGD@0.1 10.00 = 73.60 > 30"]
    assert flag.numbers["A_PGD_at_eps_s"] == 10.0 and flag.numbers["eps_s"] == 0.1
    assert "A_SA − PGD@0.1 > 30 points (both at ε_s 0.1)" in flag.rule
    # a record from before the like-with-like measurement: no pair at one ε, so no verdict either way
    assert check_run(cfg, {"A_SA": 83.6, "A_PGD": 0.0}, []) == []


def test_with_another_pgd_eps_the_collapse_rule_reads_the_monitor_pgd_at_eps_s():
    cfg = config(pgd_eps=0.3, mask_rule="collapse")

    def ep(n, pgd_big, pgd_s, fgsm):
        return {**epoch(n, pgd_big, fgsm), "monitor_A_PGD_at_eps_s": pgd_s}

    # PGD at 0.3 collapses from a low level while PGD at ε_s holds: not masking
    assert check_run(cfg, {}, [ep(1, 40, 80, 85), ep(2, 5, 79, 85)]) == []
    (flag,) = check_run(cfg, {}, [ep(1, 5, 80, 85), ep(2, 5, 10, 84)])
    assert "monitor PGD 80.0→10.0 while FGSM 85.0→84.0" in flag.reasons[0]
    assert check_run(cfg, {}, [epoch(1, 60, 85), epoch(2, 0, 85)]) == []  # old history: no PGD at ε_s


def test_the_flag_and_check_d_share_one_threshold():
    from core.checks import FGSM_PGD_GAP, Thresholds

    assert config().mask_gap == FGSM_PGD_GAP == Thresholds().fgsm_gap


def test_other_checks_can_register_and_feed_the_same_record():
    def always(cfg, metrics, history):
        return [Flag("sanity_test", "always", ["because"])]

    register(always)
    try:
        record = flags_record(check_run(config(), {"A_SA": 90.0, "A_PGD": 10.0}, []))
        assert record["flags"] == ["gradient_masking", "sanity_test"]
        assert [d["name"] for d in record["flag_details"]] == ["gradient_masking", "sanity_test"]
    finally:
        CHECKS.remove(always)


def test_flag_rule_is_not_part_of_the_group_key():
    assert config(mask_gap=10).group_key() == config().group_key()
    assert config(train_attack="pgd").group_key() != config().group_key()


def _run(runs: Path, *overrides: str, repeat: bool = False):
    args = ["run", "--variant", "baseline", "--dataset", "mnist-sample", "--epochs", "3", "--runs-dir", str(runs)]
    args += ["--repeat"] if repeat else []
    for item in [*SMALL_SET, *overrides]:
        args += ["--set", item]
    return runner.invoke(app, args)


@pytest.mark.slow
def test_a_flagged_run_is_marked_in_ls_json_show_and_export(tmp_path):
    # mask_gap=0: any A_SA > A_PGD trips the rule (the numbers are deterministic for the seed and thread count)
    result = _run(tmp_path, "mask_gap=0", "mask_rule=gap")
    assert result.exit_code == 0, result.output
    (record,) = Store(tmp_path).all()
    gap = record["metrics"]["A_SA"] - record["metrics"]["A_PGD"]
    assert gap > 0 and record["flags"] == ["gradient_masking"]
    assert "⚠ gradient_masking" in result.output and "rule: final A_SA − A_PGD > 0 points" in result.output
    md = runner.invoke(app, ["export", "--runs-dir", str(tmp_path)]).output
    assert "gradient_masking" in md and "⚠" in md
    # the rule changes no number, so the same config and seed would be reused: --repeat makes a second run (it
    # supersedes the first in tables: one run per seed)
    clean = _run(tmp_path, "mask_rule=off", repeat=True)
    assert clean.exit_code == 0

    listed = {r["id"]: r for r in json.loads(runner.invoke(app, ["ls", "--json", "--runs-dir", str(tmp_path)]).output)}
    assert listed[record["id"]]["flags"] == ["gradient_masking"]
    assert listed[record["id"]]["flag_details"][0]["numbers"]["gap"] == pytest.approx(gap, abs=1e-3)
    assert [r["flags"] for r in listed.values() if r["id"] != record["id"]] == [[]]

    table = runner.invoke(app, ["ls", "--runs-dir", str(tmp_path)], terminal_width=160).output
    flagged_line = next(line for line in table.splitlines() if record["id"] in line)
    other_line = next(line for line in table.splitlines() if "baseline" in line and record["id"] not in line)
    assert "⚠" in flagged_line and "⚠" not in other_line and "flagged: gradient_masking" in table

    shown = runner.invoke(app, ["show", record["id"], "--runs-dir", str(tmp_path)], terminal_width=400).output
    assert "gradient_masking" in shown and f"= {gap:.2f} > 0" in shown
    epochs = [json.loads(line) for line in (tmp_path / record["id"] / "metrics.jsonl").read_text().splitlines()]
    pgd_curve = [e["monitor_A_PGD"] for e in epochs if e["kind"] == "epoch"]
    assert len(pgd_curve) == 3 and all(f"{v:.2f}" in shown for v in pgd_curve)  # the per-epoch PGD column


@pytest.mark.slow
def test_a_robust_model_evaluated_at_a_larger_pgd_eps_is_not_flagged(tmp_path):
    """Real digits, FGSM-RS at ε_s 0.1, A_PGD at 0.3: A_SA − A_PGD is far above 30, yet nothing is masked."""
    result = _run(tmp_path, "train_attack=fgsm_rs", "eps_s=0.1", "pgd_eps=0.3", "pgd_alpha=0.01", "pgd_steps=20")
    assert result.exit_code == 0, result.output
    (record,) = Store(tmp_path).all()
    m = record["metrics"]
    assert m["A_SA"] - m["A_PGD"] > 30  # the old rule (A_SA at 0.1 − A_PGD at 0.3) flagged this run
    assert record["metrics_n"]["A_PGD_at_eps_s"] == record["metrics_n"]["A_PGD"]
    assert m["A_SA"] - m["A_PGD_at_eps_s"] <= 30 and record["flags"] == []
    assert f"the same PGD at ε_s (for the gradient-masking flag): {m['A_PGD_at_eps_s']:.2f}%" in result.output
    epochs = [json.loads(line) for line in (tmp_path / record["id"] / "metrics.jsonl").read_text().splitlines()]
    assert all("monitor_A_PGD_at_eps_s" in e for e in epochs if e["kind"] == "epoch")


@pytest.mark.slow
def test_curves_png_has_a_pgd_monitor_panel(tmp_path, monkeypatch):
    import amltui.app.results.png_figures as figures

    captured = []
    real_close = figures.plt.close
    monkeypatch.setattr(figures.plt, "close", lambda fig: (captured.append(fig), real_close(fig)))
    history = [{"epoch": e, "train_loss": 1.0 / e, "monitor_A_orig": 90.0, "monitor_A_SA": 60.0,
                "monitor_A_PGD": 50.0 - 20 * e} for e in (1, 2)]
    path = figures.curves_figure({"baseline": [history]}, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = captured
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert "PGD acc % (monitor)" in panels
    (line,) = panels["PGD acc % (monitor)"].get_lines()
    assert list(line.get_ydata()) == [30.0, 10.0]


def _rec(run_id: str, seed: int, flags: list[str], **extra) -> dict:
    detail = [{"name": "gradient_masking", "rule": "final A_SA − A_PGD > 30 points",
               "reasons": [f"A_SA 80.00 − A_PGD 1.00 = 79.00 > 30 ({run_id})"], "numbers": {}}] if flags else []
    return {"id": run_id, "status": "done", "variant": "baseline", "seed": seed, "dataset": "mnist",
            "preset": "quick", "fingerprint": "fp", "code_version": "v", "group": "g", "context": "c",
            "config_diff": {}, "config": {}, "metrics": {"A_orig": 95.0, "A_SA": 80.0, "A_PGD": 1.0},
            "flags": flags, "flag_details": detail, **extra}


def test_tables_mark_flagged_cells_with_a_footnote_in_every_format():
    from amltui.app.results.report import aggregate, render

    rows = aggregate([_rec("r0", 0, ["gradient_masking"]), _rec("r1", 1, [])])
    md = render(rows, "md")
    row = next(line for line in md.splitlines() if line.startswith("| baseline"))
    assert "80.00 ± 0.00 (n=2) ⚠" in row and "95.00 ± 0.00 (n=2) |" in row  # only the A_SA cell
    assert "1 of 2 runs flagged gradient_masking" in md and "(r0)" in md
    csv_text = render(rows, "csv")
    assert csv_text.splitlines()[0].endswith(",flags") and "gradient_masking:1/2" in csv_text
    tex = render(rows, "latex")
    assert "$^\\ddagger$" in tex and "gradient\\_masking" in tex
    clean = render(aggregate([_rec("r1", 1, [])]), "md")
    assert "⚠" not in clean and "flagged" not in clean


def test_tables_say_which_rule_selected_the_weights():
    from amltui.app.results.report import aggregate, render

    md = render(aggregate([_rec("r0", 0, [], select="best_pgd", selected_epoch=5, epochs=8)]), "md")
    assert "select=best_pgd" in md and "r0: epoch 5/8" in md and "never the test split" in md
    assert "select=best_pgd" not in render(aggregate([_rec("r1", 0, [])]), "md")


def test_report_md_has_a_flags_and_selection_section():
    from amltui.app.results.report import aggregate
    from amltui.app.results.reproduce import _flag_section

    runs = [_rec("r0", 0, ["gradient_masking"]), _rec("r1", 1, [], select="best_pgd", selected_epoch=3, epochs=8)]
    text = "\n".join(_flag_section(aggregate(runs), runs))
    assert "**Flags**" in text and "1 of 2 runs flagged gradient_masking" in text
    assert "select=best_pgd" in text and "r1: epoch 3/8" in text
    plain = "\n".join(_flag_section(aggregate([_rec("r1", 1, [])]), [_rec("r1", 1, [])]))
    assert "No run is flagged" in plain and "select=last" in plain


@pytest.mark.slow
def test_eval_recomputes_flags_and_best_pgd_runs_record_their_epoch(tmp_path):
    result = _run(tmp_path, "mask_gap=0", "mask_rule=gap", "select=best_pgd", "holdout=100")
    assert result.exit_code == 0, result.output
    (record,) = Store(tmp_path).all()
    assert record["select"] == "best_pgd" and record["monitor"] == "holdout" and record["n_holdout"] == 100
    epochs = [json.loads(line) for line in (tmp_path / record["id"] / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "epoch"]
    pgd = [e["monitor_A_PGD"] for e in epochs]
    assert record["selected_epoch"] == pgd.index(max(pgd)) + 1
    assert f"weights of epoch {record['selected_epoch']}" in result.output
    # re-evaluation from the checkpoint uses the selected weights (same numbers) and recomputes the flags
    evaluated = runner.invoke(app, ["eval", record["id"], "--runs-dir", str(tmp_path)])
    assert evaluated.exit_code == 0, evaluated.output
    again = Store(tmp_path).get(record["id"])
    assert again["metrics"] == record["metrics"] and again["flags"] == record["flags"]
    md = runner.invoke(app, ["export", "--runs-dir", str(tmp_path)]).output
    assert f"{record['id']}: epoch {record['selected_epoch']}/3" in md
