"""Tramèr et al.'s human-labelled invariance sets: loading the published format, scoring, the eval command."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import core.human_sets as hs_mod
from amltui.app.results import human_agreement
from amltui.app.runs.store import Store
from amltui.cli import app
from core.data import load_dataset, write_idx
from core.human_sets import HUMAN_SETS, HumanSetsNotFound, load_human_sets, locate, score_human_set

runner = CliRunner()


def write_published_layout(folder: Path, originals: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Files shaped like invariance_examples/: uint8 or float32 images on the 0..255 scale, int64 labels/indices."""
    rng = np.random.default_rng(0)
    n = 20
    idx = np.sort(rng.choice(len(originals), n, replace=False)).astype(np.int64)
    human = labels[idx].astype(np.int64).copy()
    human[::2] = (human[::2] + 1) % 10  # every other example changed its label in the eyes of humans
    written = {"indices": idx, "human": human}
    for name, spec in HUMAN_SETS.items():
        base = originals[idx].astype(np.float32)
        eps = 255 * (spec.eps or 0.3)
        images = np.clip(base + rng.uniform(-eps, eps, base.shape), 0, 255)
        if name == "linf-eps0.4-automated":
            images[0, 14, 14] = np.clip(base[0, 14, 14] + eps + 3, 0, 255) if base[0, 14, 14] < 100 else 0
        dtype = np.float32 if name == "linf-eps0.3-automated" else np.uint8
        images = images.astype(dtype)
        for rel, arr in ((spec.images, images), (spec.labels, human), (spec.indices, idx)):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / rel, arr)
        written[name] = images
    return written


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", seed=0)


@pytest.fixture
def published(tmp_path, synthetic):
    folder = tmp_path / "invariance_examples"
    originals = synthetic.test.images.squeeze(1).numpy()
    written = write_published_layout(folder, originals, synthetic.test.labels.numpy())
    return folder, written


@pytest.mark.slow
def test_loads_every_set_on_the_unit_scale(published):
    folder, written = published
    sets = load_human_sets(locate(folder.parent))  # the parent of invariance_examples/ works too
    assert set(sets) == set(HUMAN_SETS)
    for name, hs in sets.items():
        assert hs.images.shape == (20, 1, 28, 28) and hs.images.dtype == torch.float32
        assert 0 <= float(hs.images.min()) and float(hs.images.max()) <= 1
        assert torch.allclose(hs.images.squeeze(1) * 255, torch.from_numpy(written[name].astype(np.float32)),
                              atol=1e-3)
        assert hs.test_indices.tolist() == written["indices"].tolist()


def test_missing_files_are_named(published):
    folder, _ = published
    (folder / "l0" / "automated_labels.npy").unlink()
    with pytest.raises(HumanSetsNotFound, match="l0/automated_labels.npy"):
        locate(folder)


def test_scoring_splits_label_changing_examples(published, synthetic):
    folder, written = published
    hs = load_human_sets(folder)["linf-eps0.3-automated"]
    originals = synthetic.test.images[hs.test_indices]
    original_labels = synthetic.test.labels[hs.test_indices]
    changed = hs.human_labels != original_labels

    # A "model" following humans on the first 4 changed examples and keeping the original label elsewhere.
    follow = torch.zeros_like(changed)
    follow[torch.nonzero(changed).flatten()[:4]] = True

    def predict(x):
        assert torch.equal(x, hs.images)
        return torch.where(follow, hs.human_labels, original_labels)

    result = score_human_set(predict, hs, originals, original_labels)
    n_changed = int(changed.sum())
    assert result.n == 20 and result.n_changed == n_changed == 10
    assert result.follow_human == pytest.approx(40.0) and result.keep_original == pytest.approx(60.0)
    assert result.acc_human == pytest.approx(100 * (10 + 4) / 20)
    assert result.outside_budget == 0
    # The unchanged half: all 10 predicted as their (shared) label.
    assert result.n_unchanged == 10 and result.agree_unchanged == pytest.approx(100.0)


def test_the_split_reads_a_higher_agreement_both_ways(published, synthetic):
    """Two models with the same overall agreement: one by following humans on changed labels, one by keeping the
    label where humans kept it; only the split tells them apart."""
    hs = load_human_sets(published[0])["linf-eps0.3-automated"]
    original = synthetic.test.labels[hs.test_indices]
    changed = hs.human_labels != original
    wrong = (hs.human_labels + 5) % 10  # neither the human nor the original label
    follower = torch.where(changed, hs.human_labels, wrong)  # follows every changed label, misses the rest
    keeper = original.clone()  # keeps every original label
    a = score_human_set(lambda x: follower, hs, None, original)
    b = score_human_set(lambda x: keeper, hs, None, original)
    assert a.acc_human == b.acc_human == pytest.approx(50.0)
    assert (a.follow_human, a.agree_unchanged) == (pytest.approx(100.0), pytest.approx(0.0))
    assert (b.follow_human, b.agree_unchanged) == (pytest.approx(0.0), pytest.approx(100.0))
    # Without the original labels there is no split (and no claim of one).
    c = score_human_set(lambda x: keeper, hs, None, None)
    assert c.n_changed == c.n_unchanged == 0 and c.follow_human is None and c.agree_unchanged is None
    text = human_agreement.split_text(dataclasses.asdict(a))
    assert text == "50.0 all (n=20); 100.0 changed (n=10), 0.0 unchanged (n=10)"
    assert "not split" in human_agreement.split_text(dataclasses.asdict(c))


def test_pixels_beyond_the_budget_are_reported_not_fatal(published, synthetic):
    folder, _ = published
    hs = load_human_sets(folder)["linf-eps0.4-automated"]
    result = score_human_set(lambda x: hs.human_labels, hs, synthetic.test.images[hs.test_indices],
                             synthetic.test.labels[hs.test_indices])
    assert result.outside_budget == 1 and result.max_excess > 0
    assert result.acc_human == 100.0


def test_download_fills_the_cache_and_fails_clearly_offline(published, tmp_path, monkeypatch):
    folder, _ = published
    served = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(url, timeout):
        assert url.startswith(hs_mod.BASE_URL) and timeout > 0
        served.append(url)
        return Response((folder / url[len(hs_mod.BASE_URL):]).read_bytes())

    monkeypatch.setattr(hs_mod.urllib.request, "urlopen", fake_urlopen)
    cache = tmp_path / "cache"
    assert locate(None, cache=cache) == cache and len(served) == 10
    assert locate(None, cache=cache) == cache and len(served) == 10  # cached: no second download
    with pytest.raises(HumanSetsNotFound, match="--human-sets-dir"):
        locate(None, cache=tmp_path / "empty", download=False)

    def offline(url, timeout):
        raise hs_mod.urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(hs_mod.urllib.request, "urlopen", offline)
    with pytest.raises(HumanSetsNotFound, match="could not download"):
        locate(None, cache=tmp_path / "offline")


@pytest.mark.slow
def test_eval_human_sets_command(published, synthetic, tmp_path):
    folder, _ = published
    runs = tmp_path / "runs"
    sets = ["arch=small", "train_subset=256", "test_subset=128", "batch_size=64", "pgd_steps=2", "threads=1",
            "eval_ia=false"]
    # The sets are MNIST digits: only a model trained on MNIST digits (here the shipped sample) is scored.
    args = ["run", "--id", "h", "--dataset", "mnist-sample", "--epochs", "1", "--runs-dir", str(runs)]
    assert runner.invoke(app, args + [a for s in sets for a in ("--set", s)]).exit_code == 0
    out = runner.invoke(app, ["eval", "h", "--human-sets", "--from-dir", str(folder), "--runs-dir", str(runs)])
    assert out.exit_code == 0, out.output
    assert "linf-eps0.4-manual" in out.output and "--mnist-dir" in out.output
    stored = Store(runs).get("h")["human_sets"]
    assert stored["have_originals"] is False and set(stored["sets"]) == set(HUMAN_SETS)

    # With the original test split given as an idx folder, label-changing examples are split.
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for split, name in ((synthetic.train, "train"), (synthetic.test, "t10k")):
        write_idx(mnist / f"{name}-images-idx3-ubyte", split.images.squeeze(1).numpy())
        write_idx(mnist / f"{name}-labels-idx1-ubyte", split.labels.numpy().astype(np.uint8))
    out = runner.invoke(app, ["eval", "h", "--human-sets", "--from-dir", str(folder), "--mnist-dir", str(mnist),
                              "--runs-dir", str(runs)])
    assert out.exit_code == 0, out.output
    stored = Store(runs).get("h")["human_sets"]
    assert stored["have_originals"] is True
    assert stored["sets"]["linf-eps0.3-automated"]["n_changed"] == 10
    assert stored["sets"]["linf-eps0.3-automated"]["n_unchanged"] == 10
    assert "agree" in out.output and "same" in out.output
    scored = stored["sets"]["linf-eps0.3-automated"]
    shown = runner.invoke(app, ["show", "h", "--runs-dir", str(runs)])
    assert shown.exit_code == 0, shown.output
    flat = " ".join(shown.output.split())  # lines wrap at the console's width
    assert f"linf-eps0.3-automated: {human_agreement.split_text(scored)}" in flat
    assert stored["sets"]["linf-eps0.4-automated"]["outside_budget"] == 1
    lines = (runs / "h" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["kind"] == "human_sets"


def test_eval_human_sets_without_the_files_says_what_to_do(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()  # a runs folder that does not exist is refused before the run is looked up (test_cli_daily.py)
    out = runner.invoke(app, ["eval", "nope", "--human-sets", "--runs-dir", str(runs)])
    assert out.exit_code == 2 and "no run 'nope'" in out.output


def test_reports_average_each_part_of_the_split_over_runs():
    """reproduce's report cell: the mean of all / changed / unchanged over the scored runs; a part that some runs
    lack (scored before the split existed) is left out, not averaged over fewer runs."""
    def record(acc, follow, agree):
        result = {"n": 100, "acc_human": acc, "n_changed": 26, "follow_human": follow, "n_unchanged": 74}
        if agree is not None:
            result["agree_unchanged"] = agree
        return {"human_sets": {"sets": {"linf-eps0.3-automated": result}}}

    both = [record(60.0, 20.0, 74.0), record(70.0, 30.0, 84.0)]
    assert human_agreement.runs_text(both) == ("65.0 all (n=100); 25.0 changed (n=26); 79.0 unchanged (n=74) — "
                                               "mean of 2 runs")
    mixed = [record(60.0, 20.0, 74.0), record(70.0, 30.0, None)]
    assert "unchanged" not in human_agreement.runs_text(mixed)
    assert human_agreement.runs_text([{}]) == "not evaluated"
