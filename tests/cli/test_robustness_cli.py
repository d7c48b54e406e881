"""`amltui eval --autoattack --curve --checks`, `plot --curve`, export and show, on a tiny real run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from amltui.app.runs.store import Store
from amltui.cli import app
from tests.helpers import tiny_items

runner = CliRunner()
ITEMS = tiny_items(pgd_steps=2, aa_subset=16, aa_version="apgd-ce,apgd-t")  # AutoAttack on 16 images, two parts


def invoke(*args: str):
    return runner.invoke(app, list(args))


def _run(runs, *extra: str) -> dict:
    sets = [a for item in ITEMS + list(extra) for a in ("--set", item)]
    result = invoke("run", "--variant", "baseline", "--dataset", "synthetic", "--epochs", "1", "--runs-dir",
                    str(runs), *sets)
    assert result.exit_code == 0, result.output
    (record,) = Store(runs).all()
    return record


@pytest.mark.slow
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
    assert [(c["attack"], c["steps"], c["targets"]) for c in aa["components"]] == [("apgd-ce", 100, 0),
                                                                                   ("apgd-t", 100, 9)]
    assert set(aa["seconds_by"]) == {"apgd-ce", "apgd-t"} and aa["seconds"] >= 0
    curve = json.loads((folder / "curve.json").read_text())
    aa_key = "aa-apgd-ce+apgd-t@apgd-ce:100+apgd-t:100x9"  # the counts are in the key: never a 10-it. result
    assert curve["grid"] == [0.0, 0.15, 0.3] and set(curve["curves"]) == {"fgsm", "pgd-2x1-s0", aa_key}
    eps_s = record["config"]["eps_s"]
    # AutoAttack runs only where asked (ε_s by default) and at the free clean point
    assert [e for e, v in zip(curve["grid"], curve["curves"][aa_key], strict=True) if v is not None] == \
        sorted({0.0, eps_s} & set(curve["grid"]))
    assert (folder / "curve.png").stat().st_size > 1000
    assert len(record["checks"]["results"]) == 6  # (b) looks both ways
    checks_flagged = {f for f in record.get("flags", []) if f.startswith("check_")}  # (a tiny run may be at_chance)
    assert checks_flagged == {r["flag"] for r in record["checks"]["results"] if r["passed"] is False}
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
    assert f"A_AA: AutoAttack apgd-ce+apgd-t (APGD-CE/APGD-T 100 it., 9 target classes), ε {eps_s:g}, n=16" \
        in exported.output
    assert "APGD-CE/APGD-T 100 it." in shown.output and "n=16" in shown.output
    listed = invoke("ls", "--runs-dir", str(tmp_path))
    assert "A_AA: AutoAttack apgd-ce+apgd-t (APGD-CE/APGD-T 100 it., 9 target classes)" in listed.output
    csv_text = invoke("export", "--runs-dir", str(tmp_path), "--format", "csv").output
    assert ",autoattack," in csv_text.splitlines()[0] and "APGD-CE/APGD-T 100 it." in csv_text
    latex = invoke("export", "--runs-dir", str(tmp_path), "--format", "latex").output
    caption = next(line for line in latex.splitlines() if "\\caption" in line)
    assert "AutoAttack apgd-ce+apgd-t (APGD-CE/APGD-T 100 it." in caption and "n=16" in caption
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


@pytest.mark.slow
def test_eval_aa_config_puts_a_aa_in_the_run_record(tmp_path):
    record = _run(tmp_path, "eval_aa=true")
    assert record["metrics_n"]["A_AA"] == 16 and record["autoattack"]["version"] == "apgd-ce+apgd-t"
    assert (tmp_path / record["id"] / "autoattack.json").is_file()


@pytest.mark.slow
def test_bad_eps_grid_is_a_clear_user_error(tmp_path):
    record = _run(tmp_path)
    result = invoke("eval", record["id"], "--runs-dir", str(tmp_path), "--curve", "--eps-grid", "0,3")
    assert result.exit_code == 2 and "pixel units" in result.output


@pytest.mark.slow
def test_reproduce_report_has_a_aa_checks_and_the_robustness_figure(tmp_path):
    from amltui.app.results.reproduce import write_report

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
    assert "| A_PGD | A_AA |" in text and "A_AA 12" in text
    assert "AutoAttack apgd-ce+apgd-t (APGD-CE/APGD-T 100 it., 9 target classes), ε" in text and "n=12" in text
    checks = text.split("## Sanity checks", 1)[1]
    assert "No run has been checked." in checks or checks.count("no sanity checks run") == 3  # 1-epoch runs: at chance
    assert "![robustness.png](robustness.png)" in text
    assert (tmp_path / "report" / "robustness.png").stat().st_size > 1000


def _run_variant(runs, variant: str, seed: int) -> dict:
    sets = [a for item in ITEMS for a in ("--set", item)]
    result = invoke("run", "--variant", variant, "--seed", str(seed), "--dataset", "synthetic", "--epochs", "1",
                    "--runs-dir", str(runs), *sets)
    assert result.exit_code == 0, result.output
    return max(Store(runs).all(), key=lambda r: r["created"])


@pytest.mark.slow
def test_piped_eval_prints_one_line_per_measurement(tmp_path):
    record = _run(tmp_path)
    result = invoke("eval", record["id"], "--runs-dir", str(tmp_path), "--autoattack", "--curve",
                    "--eps-grid", "0,0.15", "--yes")
    assert result.exit_code == 0, result.output
    ended = [line for line in result.output.splitlines() if line.startswith("eval ") and " images in " in line]
    entries = json.loads((tmp_path / record["id"] / "robustness" / "cache.json").read_text())["entries"]
    assert len(ended) == len(entries) == len({line.split(":")[0] for line in ended})  # one each, none twice
    assert any(line.startswith("eval AA-apgd-ce+apgd-t ε=") for line in ended)
    assert "ETA" not in result.output  # no bar drawn into a pipe (and the measurements were short)


def test_plain_lines_report_elapsed_and_eta_during_a_long_measurement():
    from amltui.cli.progress_bars import PlainMeasurements

    now = [0.0]
    lines: list[str] = []
    plain = PlainMeasurements(lines.append, every=60, clock=lambda: now[0])
    for t, done in ((0, 0), (30, 10), (61, 20), (90, 30), (130, 40), (150, 100)):
        now[0] = t
        plain.on_eval("AA-standard ε=0.1", done, 100)
    assert lines == ["eval AA-standard ε=0.1: 20/100 images, elapsed 1:01, ETA 4:04",
                     "eval AA-standard ε=0.1: 40/100 images, elapsed 2:10, ETA 3:15",
                     "eval AA-standard ε=0.1: 100 images in 2:30"]


@pytest.mark.slow
def test_long_evaluation_is_estimated_and_confirmed(tmp_path, monkeypatch):
    from amltui.app.science import robustness
    from amltui.cli import results

    record = _run(tmp_path)
    run_id, folder = record["id"], tmp_path / record["id"]
    monkeypatch.setattr(robustness, "CONFIRM_OVER_S", 0.0)  # any uncached work counts as long
    monkeypatch.setattr(results, "interactive", lambda: False)
    refused = invoke("eval", run_id, "--runs-dir", str(tmp_path), "--autoattack")
    assert refused.exit_code == 2, refused.output
    assert "projected to take about" in refused.output and "--yes" in refused.output
    assert "A_AA" not in Store(tmp_path).get(run_id)["metrics"] and not (folder / "autoattack.json").exists()
    monkeypatch.setattr(results, "interactive", lambda: True)
    declined = invoke_input("n\n", "eval", run_id, "--runs-dir", str(tmp_path), "--autoattack")
    assert declined.exit_code == 1 and "start it?" in declined.output and "not started" in declined.output
    assert not (folder / "autoattack.json").exists()
    accepted = invoke_input("y\n", "eval", run_id, "--runs-dir", str(tmp_path), "--autoattack")
    assert accepted.exit_code == 0, accepted.output
    assert "A_AA" in Store(tmp_path).get(run_id)["metrics"]
    monkeypatch.setattr(results, "interactive", lambda: False)
    curve = invoke("eval", run_id, "--runs-dir", str(tmp_path), "--curve", "--eps-grid", "0,0.2", "--yes")
    assert curve.exit_code == 0 and "projected to take about" in curve.output  # --yes: the estimate, no question
    assert "start it?" not in curve.output


def invoke_input(text: str, *args: str):
    return runner.invoke(app, list(args), input=text)


@pytest.mark.slow
def test_eval_aa_version_runs_the_fast_ensemble_labelled_as_such(tmp_path):
    record = _run(tmp_path)
    bad = invoke("eval", record["id"], "--runs-dir", str(tmp_path), "--autoattack", "--aa-version", "fastest")
    assert bad.exit_code == 2 and "--aa-version" in bad.output and "standard-fast" in bad.output
    result = invoke("eval", record["id"], "--runs-dir", str(tmp_path), "--autoattack", "--aa-version",
                    "standard-fast", "--yes")
    assert result.exit_code == 0, result.output
    aa = json.loads((tmp_path / record["id"] / "autoattack.json").read_text())
    assert aa["version"] == "standard-fast" and [c["steps"] for c in aa["components"]] == [10, 10, 10, 5000]
    assert "AutoAttack standard-fast (APGD-CE/APGD-T/FAB-T 10 it., Square 5000 q." in result.output
