"""Issue 12: `eval` never writes over a running (or resumed) run's metrics, damaged checkpoints and configs
are clear errors, figures report the file they wrote, and bad data files are refused with the reason."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from amltui.app.runs.store import Store
from amltui.app.science import evaluation as evaluation_module
from amltui.app.science.evaluation import evaluate_run
from core.data import load_idx_folder, write_idx
from core.human_sets import HUMAN_SETS, load_human_sets
from tests.helpers import assert_clean, edit_record, invoke, tiny_sets


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real finished tiny run (id t0), trained once for the module."""
    runs = tmp_path_factory.mktemp("trained")
    args = ["run", "--variant", "baseline", "--dataset", "synthetic", "--epochs", "1", "--id", "t0",
            "--gpus", "none", "--runs-dir", runs]
    args += tiny_sets()
    assert_clean(invoke(*args), 0)
    return runs


@pytest.fixture
def runs(trained: Path, tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "runs"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns("*.lock", ".slots"))
    yield copy


@pytest.mark.slow
def test_eval_refuses_a_running_or_queued_run(runs: Path) -> None:
    store = Store(runs)
    metrics = store.get("t0")["metrics"]
    for status in ("running", "queued"):
        edit_record(store, "t0", status=status)
        out = assert_clean(invoke("eval", "t0", "--runs-dir", runs), 2)
        assert f"run t0 is {status}" in out and "only a finished run" in out
        assert store.get("t0")["metrics"] == metrics


@pytest.mark.slow
def test_eval_never_stores_a_result_over_a_run_resumed_meanwhile(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(runs)
    edit_record(store, "t0", metrics={"A_orig": 99.4}, epoch=1)
    real = evaluation_module.run_evaluation

    def resumed_during(*args, **kwargs):  # the run is resumed (and trains on) while eval works on its old state
        scores = real(*args, **kwargs)
        edit_record(store, "t0", status="running", resumes=1, epoch=1)
        return scores

    monkeypatch.setattr(evaluation_module, "run_evaluation", resumed_during)
    with pytest.raises(ValueError, match="changed while it was being evaluated"):
        evaluate_run(store, "t0")
    assert store.get("t0")["metrics"] == {"A_orig": 99.4}
    assert json.loads((runs / "t0" / "run.json").read_text())["metrics"] == {"A_orig": 99.4}


@pytest.mark.slow
def test_eval_of_a_finished_run_still_works(runs: Path) -> None:
    out = assert_clean(invoke("eval", "t0", "--runs-dir", runs), 0)
    assert "A_orig" in out
    assert Store(runs).get("t0")["evaluated"]


@pytest.mark.slow
def test_damaged_checkpoints_and_configs_are_clear_errors(runs: Path) -> None:
    checkpoint = runs / "t0" / "checkpoint.pt"
    good = torch.load(checkpoint, weights_only=True)
    cases = {
        "lacks": {k: v for k, v in good.items() if k not in ("model", "optimizer")},
        "does not fit": {**good, "model": {"trunk.0.weight": torch.zeros(3, 3)}},
    }
    for expected, state in cases.items():
        torch.save(state, checkpoint)
        out = assert_clean(invoke("eval", "t0", "--runs-dir", runs), 1)
        assert f"checkpoint {checkpoint}" in out and expected in out, out
    torch.save(good, checkpoint)
    config = json.loads((runs / "t0" / "config.json").read_text())
    (runs / "t0" / "config.json").write_text(json.dumps({**config, "embed_dim": 7}))
    out = assert_clean(invoke("eval", "t0", "--runs-dir", runs), 1)
    assert "does not fit the run's model" in out and "embed_dim=7" in out


@pytest.mark.slow
def test_plot_out_reports_the_file_it_wrote(runs: Path, tmp_path: Path) -> None:
    folder = tmp_path / "figs"
    folder.mkdir()
    out = assert_clean(invoke("plot", "t0", "-n", "64", "--out", folder, "--runs-dir", runs), 0)
    written = folder / "t0-pca.png"
    assert written.is_file() and f"wrote {written}" in out
    out = assert_clean(invoke("plot", "t0", "-n", "64", "--out", tmp_path / "noext", "--runs-dir", runs), 0)
    assert (tmp_path / "noext.png").is_file() and f"wrote {tmp_path / 'noext.png'}" in out


@pytest.mark.slow
def test_invariance_show_to_an_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = assert_clean(invoke("invariance", "show", "--dataset", "synthetic", "-n", "1", "--train-subset", "64",
                              "--test-subset", "16", "--out", tmp_path / "afile" / "x.png",
                              "--runs-dir", tmp_path / "runs"), 2)
    assert "cannot write --out" in out


# ---- bad data files ----------------------------------------------------------------------------------------


def test_idx_files_with_zero_images_are_refused_with_the_reason(tmp_path: Path) -> None:
    for stem, n in (("train", 0), ("t10k", 4)):
        write_idx(tmp_path / f"{stem}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        write_idx(tmp_path / f"{stem}-labels-idx1-ubyte", np.zeros((n,), np.uint8))
    with pytest.raises(ValueError, match="holds no images"):
        load_idx_folder(tmp_path)


@pytest.mark.parametrize(("which", "value", "expected"), [("labels", 99, "labels must lie in 0..9, found 99"),
                                                           ("indices", -5, "must lie in 0..9999, found -5")])
def test_human_label_files_out_of_range_are_refused(tmp_path: Path, which: str, value: int, expected: str) -> None:
    n = 3
    for spec in HUMAN_SETS.values():
        arrays = {spec.images: np.zeros((n, 28, 28), np.uint8), spec.labels: np.array([1, 2, 3]),
                  spec.indices: np.array([0, 1, 2])}
        for rel, arr in arrays.items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / rel, arr)
    spec = next(iter(HUMAN_SETS.values()))
    bad = np.array([1, value, 3])
    np.save(tmp_path / (spec.labels if which == "labels" else spec.indices), bad)
    with pytest.raises(ValueError, match=expected):
        load_human_sets(tmp_path)


def test_gzipped_idx_with_zero_images_too(tmp_path: Path) -> None:
    for stem, n in (("train", 4), ("t10k", 0)):
        for kind, shape in (("images-idx3", (n, 28, 28)), ("labels-idx1", (n,))):
            raw = tmp_path / f"{stem}-{kind}-ubyte"
            write_idx(raw, np.zeros(shape, np.uint8))
            raw.with_name(raw.name + ".gz").write_bytes(gzip.compress(raw.read_bytes()))
            raw.unlink()
    with pytest.raises(ValueError, match="t10k-images.*holds no images"):
        load_idx_folder(tmp_path)
