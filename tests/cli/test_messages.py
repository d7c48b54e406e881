"""Issue 24, help and messages: a mistyped choice gets a "did you mean", --help says what options take, `show`
prints config values as config.json has them, and a refused `run` leaves nothing behind (not even ./runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amltui.app.runs.store import Store
from amltui.cli import app
from tests.helpers import finished, new_run

runner = CliRunner()


def amltui(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command in a fresh folder (so a stray ./runs would show)."""
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("AMLTUI_RUNS_DIR", None)
    return subprocess.run([sys.executable, "-m", "amltui", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_mistyped_preset_gets_did_you_mean_not_a_value_error(tmp_path):
    result = runner.invoke(app, ["run", "--preset", "quik", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "--preset 'quik' is not a choice; did you mean 'quick'? choose one of: paper, quick, authors" \
        in result.output
    assert "Value error" not in result.output
    export = runner.invoke(app, ["export", "--format", "tex", "--runs-dir", str(tmp_path)])
    assert export.exit_code == 2 and "did you mean 'latex'?" in export.output


def test_a_variant_with_a_dash_gets_did_you_mean_the_underscore(tmp_path):
    result = runner.invoke(app, ["run", "--variant", "ml-sa", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "'ml-sa' is not a variant; did you mean 'ml_sa'?" in result.output
    typo = runner.invoke(app, ["run", "--variants", "baseline,bsaeline", "--runs-dir", str(tmp_path / "runs")])
    assert typo.exit_code == 2 and "did you mean 'baseline'?" in typo.output
    assert not (tmp_path / "runs").exists()


def test_help_lists_metric_names_tag_usage_and_slurm_options_together():
    plot = " ".join(runner.invoke(app, ["plot", "--help"]).output.split())
    assert "--x <str> --sweep: metric on the x axis: A_orig, A_SA, A_IA, A_IA_target, A_PGD, A_AA." in plot
    tag = runner.invoke(app, ["tag", "--help"]).output
    assert "Usage: amltui tag [OPTIONS] RUN... TAG\n" in tag and "TAG..." not in tag
    options = [line.split()[0] for line in runner.invoke(app, ["run", "--help"]).output.splitlines()
               if line.strip().startswith("--")]
    at = options.index("--partition")
    assert options[at:at + 3] == ["--partition", "--time", "--gpus-per-node"]


def test_show_prints_config_values_as_json(tmp_path):
    store = Store(tmp_path)
    finished(store, new_run(store, "r0"))
    out = runner.invoke(app, ["show", "r0", "--runs-dir", str(tmp_path)]).output
    config = json.loads((tmp_path / "r0" / "config.json").read_text())
    assert config["data_dir"] is None and config["eval_ia"] is False  # the values this test is about
    assert "None" not in out and "False" not in out and "True" not in out
    pairs = out.split()
    assert pairs[pairs.index("data_dir") + 1] == "null" and pairs[pairs.index("eval_ia") + 1] == "false"


@pytest.mark.slow
def test_a_refused_run_creates_no_runs_folder(tmp_path):
    result = amltui("run", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 2 and "no folder" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()
