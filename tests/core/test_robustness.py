"""AutoAttack via torchattacks, robustness curves, the sanity checks and their cache, on tiny real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from amltui.app.runs.folders import RunDir
from amltui.app.science.robustness import CurveSpec, Evaluator, checkpoint_hash, compute_curve, measure_checks
from core import robustness as rob
from core.aa_spec import aa_components_of, describe_aa, parse_aa_version
from core.checks import Measurements, merge_flags, run_checks, summary_line
from core.config import ConfigError, RunConfig
from core.data import load_dataset
from core.train import train
from tests.torch_fakes import Quantized

# Not tests/helpers.py's TINY: the paper net on 512 images, so that it learns enough to attack.
LEARNER = dict(dataset="synthetic", epochs=2, train_subset=512, test_subset=128, batch_size=64, threads=1,
            eval_ia=False, pgd_steps=5)


@pytest.fixture(scope="module")
def trained():
    """A small net trained clean for 2 epochs on synthetic digits (seconds on one CPU thread)."""
    cfg = RunConfig.resolve("baseline", "quick", w_clean=1.0, w_adv=0.0, eps_s=0.3, **LEARNER)
    data = load_dataset("synthetic", None, seed=0).with_subsets(512, 128, seed=0)
    torch.manual_seed(0)
    model = train(cfg, data, device=torch.device("cpu")).model.eval()
    return cfg, data, model


# ---- the pure checks ---------------------------------------------------------------------------------
def _m(**kw) -> Measurements:
    base = dict(n=1000, eps_s=0.3, fgsm=60.0, pgd=55.0, pgd_more_steps=55.0, pgd_restarts=54.0, square=70.0,
                large_eps=0.0, curves={"PGD-40": [(0.0, 99.0), (0.3, 55.0), (0.6, 0.0)]})
    base.update(kw)
    return Measurements(**base)


def _failed(m: Measurements) -> list[str]:
    return [r.flag for r in run_checks(m) if r.passed is False]


def test_a_sound_evaluation_passes_every_check():
    results = run_checks(_m())
    assert [r.passed for r in results] == [True] * 6
    assert summary_line(results) == "checks: 6/6 passed"


@pytest.mark.parametrize(("change", "flag"), [
    (dict(large_eps=40.0), "check_large_eps"),
    (dict(pgd_more_steps=60.0), "check_more_iterations"),
    (dict(pgd_restarts=58.0), "check_more_iterations"),
    (dict(pgd_more_steps=40.0), "check_not_converged"),
    (dict(pgd_restarts=50.0), "check_not_converged"),
    (dict(square=40.0), "check_black_box"),
    (dict(fgsm=57.1, pgd=0.0, pgd_more_steps=0.0, pgd_restarts=0.0), "check_fgsm_gt_pgd"),
    (dict(curves={"FGSM": [(0.0, 99.0), (0.15, 56.0), (0.225, 64.0)]}), "check_non_monotone"),
])
def test_each_check_trips_on_its_symptom_only(change, flag):
    assert _failed(_m(**change)) == [flag]


def test_tolerances_and_thresholds_are_inclusive_and_scale_with_n():
    # one point of slack on 1000 images; on 50 images at least 2 images = 4 points
    assert _failed(_m(pgd_more_steps=56.0)) == []
    assert _failed(_m(pgd_more_steps=56.1)) == ["check_more_iterations"]
    assert _failed(_m(n=50, pgd_more_steps=59.0)) == []
    assert _failed(_m(pgd_more_steps=54.0)) == []  # lower by exactly the slack
    assert _failed(_m(pgd_more_steps=53.9)) == ["check_not_converged"]
    assert _failed(_m(fgsm=85.0, pgd=55.0)) == []  # a gap of exactly 30 points (FGSM_PGD_GAP)
    assert _failed(_m(large_eps=10.0)) == []


def test_unmeasured_checks_are_skipped_not_passed():
    results = run_checks(Measurements(n=100, eps_s=0.3, fgsm=50.0, pgd=10.0))
    assert [r.passed for r in results] == [None, None, None, None, False, None]
    assert summary_line(results).startswith("checks: 0/1 passed (5 not measured); FAILED check_fgsm_gt_pgd")
    assert results[4].numbers == {"fgsm": 50.0, "pgd": 10.0, "gap": 40.0, "max_gap": 30.0}


def test_flags_are_merged_by_union_and_only_own_passed_checks_are_cleared():
    results = run_checks(_m(fgsm=90.0))
    flags = merge_flags(["gradient_masking", "check_large_eps"], results)
    assert flags == ["gradient_masking", "check_fgsm_gt_pgd"]  # large-ε now passes; others' flags stay
    assert merge_flags(None, run_checks(Measurements(n=10, eps_s=0.3))) == []


# ---- AutoAttack and attacks on real models ------------------------------------------------------------
def test_aa_versions_and_custom_lists():
    assert parse_aa_version("standard") == ("standard", ("apgd-ce", "apgd-t", "fab-t", "square"))
    assert parse_aa_version(" APGD-CE, square ") == ("apgd-ce+square", ("apgd-ce", "square"))
    for bad in ("", "pgd", "apgd-ce,apgd-ce"):
        with pytest.raises(ValueError):
            parse_aa_version(bad)
    assert RunConfig.resolve(overrides=["aa_version=apgd-ce,square"]).aa_version == "apgd-ce+square"
    with pytest.raises(ConfigError, match="aa_version"):
        RunConfig.resolve(overrides=["aa_version=cw"])


def _counts(attack) -> tuple[str, int, int, int]:
    steps = getattr(attack, "n_queries", None) or attack.steps
    targets = getattr(attack, "n_target_classes", 0) if getattr(attack, "multi_targeted", True) else 0
    return type(attack).__name__, steps, attack.n_restarts, targets


@pytest.mark.slow
def test_standard_is_the_full_strength_reference_protocol(trained):
    _, _, model = trained
    comps = rob.aa_components(model, 0.3, "standard")
    assert [name for name, _ in comps] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [_counts(a) for _, a in comps] == [("APGD", 100, 1, 0), ("APGDT", 100, 1, 9), ("FAB", 100, 1, 9),
                                              ("Square", 5000, 1, 0)]
    assert comps[0][1].loss == "ce" and comps[2][1].multi_targeted
    assert all(a.eps == 0.3 for _, a in comps)


@pytest.mark.slow
def test_fast_version_is_torchattacks_own_ensemble_and_stays_labelled(trained):
    import torchattacks

    _, _, model = trained
    comps = rob.aa_components(model, 0.3, "standard-fast")
    reference = torchattacks.AutoAttack(model, norm="Linf", eps=0.3, version="standard", n_classes=10, seed=0)
    assert [_counts(a) for _, a in comps] == [_counts(a) for a in reference._autoattack.attacks]
    assert [_counts(a)[1] for _, a in comps] == [10, 10, 10, 5000]
    name, specs = aa_components_of("standard-fast")
    assert describe_aa({"version": name, "components": [c.to_dict() for c in specs], "eps": 0.3, "n": 50}) == \
        "AutoAttack standard-fast (APGD-CE/APGD-T/FAB-T 10 it., Square 5000 q., 9 target classes), ε 0.3, n=50"


@pytest.mark.slow
def test_custom_lists_set_their_counts_and_old_records_keep_their_10_iterations(trained):
    _, _, model = trained
    comps = rob.aa_components(model, 0.1, "apgd-ce:50,square:300")
    assert [_counts(a) for _, a in comps] == [("APGD", 50, 1, 0), ("Square", 300, 1, 0)]
    assert parse_aa_version("apgd-ce:50,square:300")[0] == "apgd-ce:50+square:300"
    with pytest.raises(ValueError, match="positive number"):
        parse_aa_version("apgd-ce:0")
    # a record from before full strength has no components: it ran torchattacks' 10-iteration ensemble
    old = describe_aa({"version": "standard", "eps": 0.3, "n": 1000})
    assert old.startswith("AutoAttack standard-fast (APGD-CE/APGD-T/FAB-T 10 it.") and old.endswith("n=1000")
    assert "10 it." in describe_aa({"version": "apgd-ce+square", "eps": 0.3, "n": 10})


@pytest.mark.slow
def test_autoattack_progress_moves_within_a_small_set(trained):
    _, data, model = trained
    x, y = data.test.images[:40], data.test.labels[:40]
    events: list[tuple[str, int, int]] = []
    res = rob.autoattack(model, x, y, 0.1, version="apgd-ce:5,square:50", batch_size=500,
                         progress=lambda *e: events.append(e))
    done = [d for _, d, _ in events]
    assert done[0] == 0 and done[-1] == 40 and done == sorted(done)
    assert len(set(done)) > 3  # not 0 → 40 in one jump: each chunk, after each component
    assert set(res.seconds_by) == {"apgd-ce", "square"}
    pgd_events: list[int] = []
    rob.pgd(model, x, y, 0.1, steps=2, batch_size=500, progress=lambda _, d, __: pgd_events.append(d))
    assert len(set(pgd_events)) > 2 and pgd_events[-1] == 40


@pytest.mark.slow
def test_autoattack_accounts_for_every_image_and_respects_the_budget(trained):
    _, data, model = trained
    x, y = data.test.images[:24], data.test.labels[:24]
    clean = rob.fgsm(model, x, y, 0.0)
    res = rob.autoattack(model, x, y, 0.15, version="standard", batch_size=16)
    assert res.n == 24 and res.correct + res.clean_wrong + sum(res.broken.values()) == 24
    assert res.clean_wrong == 24 - clean.correct
    assert res.correct <= rob.pgd(model, x, y, 0.15, steps=5).correct + 1
    assert 0 < res.max_linf <= 0.15 + 1e-5
    assert set(res.broken) == {"apgd-ce", "apgd-t", "fab-t", "square"}


@pytest.mark.slow
def test_attacks_restore_modes_and_leave_the_global_rng_alone(trained):
    _, data, model = trained
    x, y = data.test.images[:8], data.test.labels[:8]
    model.train()
    frozen = next(iter(model.children()))
    frozen.eval()  # a frozen submodule must stay in eval mode (torchattacks' own restore would flip it)
    state = torch.random.get_rng_state()
    try:
        rob.autoattack(model, x, y, 0.1, version="apgd-ce,square")
        assert model.training and not frozen.training
        assert torch.equal(torch.random.get_rng_state(), state)
    finally:
        model.eval()


@pytest.mark.slow
def test_masked_gradients_fail_the_large_eps_and_black_box_checks(trained):
    """Input quantization hides the gradient: FGSM/PGD do nothing, Square breaks the model."""
    _, data, model = trained
    masked = Quantized(model).eval()
    x, y = data.test.images[:40], data.test.labels[:40]
    m = Measurements(
        n=40, eps_s=0.3,
        fgsm=rob.fgsm(masked, x, y, 0.3).percent, pgd=rob.pgd(masked, x, y, 0.3, steps=5).percent,
        square=rob.square(masked, x, y, 0.3, n_queries=300).percent,
        large_eps=rob.pgd(masked, x, y, 0.5, steps=5).percent)
    flags = _failed(m)
    assert "check_black_box" in flags and "check_large_eps" in flags
    # the same model without the mask passes both
    plain = Measurements(
        n=40, eps_s=0.3, fgsm=rob.fgsm(model, x, y, 0.3).percent, pgd=rob.pgd(model, x, y, 0.3, steps=5).percent,
        square=rob.square(model, x, y, 0.3, n_queries=300).percent,
        large_eps=rob.pgd(model, x, y, 0.5, steps=5).percent)
    assert _failed(plain) == []


@pytest.mark.slow
def test_an_under_converged_pgd_fails_check_b_and_a_converged_one_passes(trained):
    """PGD-2 with a tiny step (ε/50) stops far inside the ball; ten times the steps finds what it missed."""
    _, data, model = trained
    x, y = data.test.images[:100], data.test.labels[:100]
    weak = rob.pgd(model, x, y, 0.3, steps=2, alpha=0.3 / 50).percent
    longer = rob.pgd(model, x, y, 0.3, steps=20, alpha=0.3 / 50).percent
    results = run_checks(Measurements(n=100, eps_s=0.3, pgd=weak, pgd_more_steps=longer))
    (b_lower,) = [r for r in results if r.flag == "check_not_converged"]
    assert longer < weak - 2 and b_lower.passed is False and "had not converged" in b_lower.message
    assert [r.flag for r in results if r.passed is False] == ["check_not_converged"]
    # the same model under a converged PGD (Madry's step 2.5·ε/k): more steps find nothing more
    sound = rob.pgd(model, x, y, 0.3, steps=10).percent
    more = rob.pgd(model, x, y, 0.3, steps=100).percent
    assert _failed(Measurements(n=100, eps_s=0.3, pgd=sound, pgd_more_steps=more)) == []


@pytest.mark.slow
def test_more_restarts_never_help_on_the_same_starts(trained):
    _, data, model = trained
    x, y = data.test.images[:32], data.test.labels[:32]
    one = rob.pgd(model, x, y, 0.05, steps=2, seed=3)
    three = rob.pgd(model, x, y, 0.05, steps=2, restarts=3, seed=3)  # the first start is the same
    assert three.correct <= one.correct


# ---- the run-folder cache and the checks' record entry -----------------------------------------------
def run_folder(path: Path, weights: int = 3) -> RunDir:
    """A run folder with a stand-in checkpoint (its hash keys the cache) and an empty record."""
    rd = RunDir(path)
    rd.path.mkdir()
    torch.save({"w": torch.zeros(weights)}, rd.checkpoint)
    (rd.path / "run.json").write_text("{}")
    return rd


@pytest.mark.slow
def test_cache_per_checkpoint_and_subset(trained, tmp_path: Path):
    cfg, data, model = trained
    rd = run_folder(tmp_path / "r1")
    cfg = cfg.replace(aa_subset=20, pgd_steps=2)
    ev = Evaluator(rd, cfg, model, data.test)
    assert ev.n == 20 and sorted(torch.bincount(ev.labels).tolist())[0] >= 1  # stratified
    spec = CurveSpec([0.0, 0.1, 0.2], pgd_steps=2)
    first = compute_curve(ev, spec)
    assert len(ev.computed) == 5  # clean once + FGSM and PGD at two ε
    again = Evaluator(rd, cfg, model, data.test)
    assert compute_curve(again, spec)["curves"] == first["curves"] and again.computed == []
    curve = json.loads((rd.path / "curve.json").read_text())
    assert curve["grid"] == [0.0, 0.1, 0.2] and curve["curves"]["fgsm"][0] == curve["curves"]["pgd-2x1-s0"][0]
    torch.save({"w": torch.ones(3)}, rd.checkpoint)  # a new checkpoint: nothing cached applies
    changed = Evaluator(rd, cfg, model, data.test)
    assert changed.ckpt != ev.ckpt and changed.ckpt == checkpoint_hash(rd.checkpoint)
    compute_curve(changed, spec)
    assert len(changed.computed) == 5
    other = Evaluator(rd, cfg, model, data.test, subset=10)
    compute_curve(other, CurveSpec([0.1], pgd_steps=2))
    assert len(other.computed) == 2


@pytest.mark.slow
def test_measure_checks_on_a_real_model(trained, tmp_path: Path):
    cfg, data, model = trained
    rd = run_folder(tmp_path / "r2", weights=1)
    ev = Evaluator(rd, cfg.replace(aa_subset=20, pgd_steps=2), Quantized(model).eval(), data.test)
    import amltui.app.science.robustness as ar

    old = ar.SQUARE_QUERIES
    ar.SQUARE_QUERIES = 200
    try:
        checks = measure_checks(ev, CurveSpec([0.0, 0.15, 0.3], pgd_steps=2))
    finally:
        ar.SQUARE_QUERIES = old
    failed = {r.flag for r in checks.pop("_results") if r.passed is False}
    assert "check_black_box" in failed
    assert checks["n"] == 20 and checks["summary"].startswith("checks: ")
    assert len(checks["results"]) == 6 and all("message" in r for r in checks["results"])


@pytest.mark.slow
def test_estimate_counts_only_what_is_not_cached_and_prices_autoattack_by_its_counts(trained, tmp_path: Path):
    from amltui.app.results.curves import aa_spec
    from amltui.app.science.robustness import estimate, passes_per_image, seconds_per_pass

    cfg, data, model = trained
    rd = run_folder(tmp_path / "r1")
    ev = Evaluator(rd, cfg.replace(aa_subset=20, pgd_steps=2), model, data.test)
    assert 0 < seconds_per_pass(ev) < 1
    pgd = [("pgd-2x1-s0", 0.1)]
    assert estimate(ev, pgd, per_pass=1.0).seconds == pytest.approx(20 * 2.35)
    full = estimate(ev, [(aa_spec("standard"), 0.1)], per_pass=1e-3)
    fast = estimate(ev, [(aa_spec("standard-fast"), 0.1)], per_pass=1e-3)
    assert full.seconds > 2 * fast.seconds > 0 and "AA standard 100it" in full.text(ev.n)
    ev.measure("pgd-2x1-s0", 0.1)
    assert estimate(ev, pgd, per_pass=1.0).seconds == 0  # cached: nothing to wait for
    # PGD's robust share at that ε scales the AutoAttack stages after the first
    share = ev.cached("pgd-2x1-s0", 0.1).percent / 100
    first, *rest = passes_per_image(aa_spec("standard"))
    assert estimate(ev, [(aa_spec("standard"), 0.1)], per_pass=1e-3).seconds == \
        pytest.approx(20 * 1e-3 * (first + share * sum(rest)))


@pytest.mark.slow
def test_curve_runs_autoattack_only_at_the_asked_eps(trained, tmp_path: Path):
    from amltui.app.science.robustness import curve_measurements

    cfg, _, _ = trained
    grid = [0.0, 0.15, 0.3, 0.45]
    spec = CurveSpec(grid, pgd_steps=2, autoattack=True)
    aa = [e for a, e in curve_measurements(cfg, spec) if a.startswith("aa-")]
    assert aa == [0.0, cfg.eps_s]  # ε_s (and the free clean point), not the whole grid
    asked = CurveSpec(grid, pgd_steps=2, autoattack=True, aa_eps=[0.15, 0.45])
    assert [e for a, e in curve_measurements(cfg, asked) if a.startswith("aa-")] == [0.15, 0.45]
