"""`amltui eval --autoattack --curve --checks`, `plot --curve`, export and show, on a tiny real run."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from amltui.app.store import Store
from amltui.cli import app

runner = CliRunner()
TINY = ["arch=small", "train_subset=256", "test_subset=128", "batch_size=64", "eval_batch_size=128",
        "pgd_steps=2", "threads=1", "eval_ia=false", "aa_subset=16", "aa_version=apgd-ce,apgd-t"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def _run(runs, *extra: str) -> dict:
    sets = [a for item in TINY + list(extra) for a in ("--set", item)]
    result = invoke("run", "--variant", "baseline", "--dataset", "synthetic", "--epochs", "1", "--runs-dir",
                    str(runs), *sets)
    assert result.exit_code == 0, result.output
    (record,) = Store(runs).all()
    return record


def test_eval_autoattack_curve_checks_end_to_end(tmp_path):
    record = _run(tmp_path)
    run_id = record["id"]
    assert "A_AA" not in record["metrics"]  # eval_aa is off by default
    result = invoke("eval", run_id, "--runs-dir", str(tmp_path), "--autoattack", "--curve", "--checks",
                    "--eps-grid", "0,0.15,0.3")
    assert result.exit_code == 0, result.output
    record = Store(tmp_path).get(run_id)
    assert record["metrics_n"]["A_AA"] == 16 and 0 <= record["metrics"]["A_AA"] <= 100
    folder = tmp_path / run_id
    aa = json.loads((folder / "autoattack.json").read_text())
    assert aa["version"] == "apgd-ce+apgd-t" and aa["n"] == 16
    assert aa["robust"] + aa["clean_wrong"] + sum(aa["broken_by"].values()) == 16
    curve = json.loads((folder / "curve.json").read_text())
    assert curve["grid"] == [0.0, 0.15, 0.3] and set(curve["curves"]) == {"fgsm", "pgd-2x1-s0", "aa-apgd-ce+apgd-t"}
    assert (folder / "curve.png").stat().st_size > 1000
    assert len(record["checks"]["results"]) == 6  # (b) looks both ways
    assert set(record.get("flags", [])) == {r["flag"] for r in record["checks"]["results"] if r["passed"] is False}
    assert "checks:" in result.output and "A_AA" in result.output and "accuracy % vs ε" in result.output
    # everything is cached: a second evaluation computes nothing new
    cache = json.loads((folder / "robustness" / "cache.json").read_text())["entries"]
    again = invoke("eval", run_id, "--runs-dir", str(tmp_path), "--autoattack", "--curve", "--checks",
                   "--eps-grid", "0,0.15,0.3")
    assert again.exit_code == 0, again.output
    assert json.loads((folder / "robustness" / "cache.json").read_text())["entries"] == cache
    # show, export and plot --curve
    shown = invoke("show", run_id, "--runs-dir", str(tmp_path))
    assert "A_AA" in shown.output and "(a) large ε" in shown.output
    exported = invoke("export", "--runs-dir", str(tmp_path))
    assert "| A_AA |" in exported.output and "A_AA 16." in exported.output
    assert f"- {run_id}: checks:" in exported.output
    plotted = invoke("plot", run_id, "--curve", "--runs-dir", str(tmp_path))
    assert plotted.exit_code == 0 and "FGSM" in plotted.output
    # a plain re-evaluation of the same checkpoint keeps A_AA
    plain = invoke("eval", run_id, "--runs-dir", str(tmp_path))
    assert plain.exit_code == 0 and Store(tmp_path).get(run_id)["metrics"]["A_AA"] == record["metrics"]["A_AA"]
    # a changed checkpoint (e.g. the run resumed and trained on): `show` says the results are stale
    with open(folder / "checkpoint.pt", "ab") as fh:
        fh.write(b"\0")
    stale = invoke("show", run_id, "--runs-dir", str(tmp_path))
    assert "measured on an earlier checkpoint" in stale.output


def test_eval_aa_config_puts_a_aa_in_the_run_record(tmp_path):
    record = _run(tmp_path, "eval_aa=true")
    assert record["metrics_n"]["A_AA"] == 16 and record["autoattack"]["version"] == "apgd-ce+apgd-t"
    assert (tmp_path / record["id"] / "autoattack.json").is_file()


def test_bad_eps_grid_is_a_clear_user_error(tmp_path):
    record = _run(tmp_path)
    result = invoke("eval", record["id"], "--runs-dir", str(tmp_path), "--curve", "--eps-grid", "0,3")
    assert result.exit_code == 2 and "pixel units" in result.output


def test_reproduce_report_has_a_aa_checks_and_the_robustness_figure(tmp_path):
    from amltui.app.reproduce import write_report

    ids = []
    for variant, seed in (("baseline", 0), ("baseline", 1), ("ml_sa", 0)):
        record = _run_variant(tmp_path, variant, seed)
        ids.append(record["id"])
        extra = ["--autoattack"] if not seed else []  # A_AA for one run per variant: the column shows n=1
        result = invoke("eval", record["id"], "--runs-dir", str(tmp_path), "--curve", *extra,
                        "--eps-grid", "0,0.2", "--subset", "12")
        assert result.exit_code == 0, result.output
    report = write_report(Store(tmp_path), ids, tmp_path / "report", "test")
    text = report.read_text()
    assert "| A_PGD | A_AA |" in text and "A_AA 12" in text and "AutoAttack apgd-ce+apgd-t (torchattacks)" in text
    assert "## Sanity checks" in text and "No run has been checked." in text
    assert "![robustness.png](robustness.png)" in text
    assert (tmp_path / "report" / "robustness.png").stat().st_size > 1000


def _run_variant(runs, variant: str, seed: int) -> dict:
    sets = [a for item in TINY for a in ("--set", item)]
    result = invoke("run", "--variant", variant, "--seed", str(seed), "--dataset", "synthetic", "--epochs", "1",
                    "--runs-dir", str(runs), *sets)
    assert result.exit_code == 0, result.output
    return max(Store(runs).all(), key=lambda r: r["created"])
