"""The invariance attack: combine rule, transforms and their exact inverse, search, target choice, fast mode."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from core.attacks.invariance import (
    ALLOWED_TARGETS,
    GRID,
    InvarianceSet,
    agreement,
    apply_transforms,
    forward_matrices,
    generate,
    ink_removed,
    inverse_matrices,
    invert_transforms,
    linf_combine,
    make_grid,
    transform_all,
)
from core.attacks.invariance_search import FastParams
from core.data import load_dataset

SMALL_GRID = make_grid((-1.5, 0.0, 1.5), (-10.0, 0.0, 10.0))


@pytest.fixture(scope="module")
def sample():
    return load_dataset("mnist-sample")


def _blob(size: int = 28, cx: float = 13.0, cy: float = 15.0, sx: float = 4.0, sy: float = 6.0) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) / 2).view(1, 1, size, size)


# ---------------------------------------------------------------------------------------------- combine


def test_combine_every_branch_on_hand_made_pixels():
    eps = 0.3
    #            bg,n<=eps  bg,n>eps  ink,within  ink,up>eps  ink,down>eps  near 1   near 0
    x = torch.tensor([0.00, 0.00, 0.50, 0.20, 0.90, 0.95, 0.10])
    n = torch.tensor([0.25, 0.80, 0.70, 0.90, 0.10, 1.00, 0.00])
    want = torch.tensor([
        0.00,  # background, neighbour ink within eps: left blank
        0.30,  # background, neighbour ink beyond eps: inked by exactly eps
        0.70,  # ink within eps: copy the neighbour
        0.50,  # ink, neighbour far above: +eps
        0.60,  # ink, neighbour far below: -eps
        1.00,  # within eps, copied value 1.0 stays inside [0, 1]
        0.00,  # within eps, down to 0
    ])
    out = linf_combine(x, n, eps)
    assert torch.allclose(out, want, atol=1e-6)
    assert bool(((out - x).abs() <= eps + 1e-6).all())


def test_combine_clips_to_unit_interval():
    eps = 0.4
    x = torch.tensor([0.9, 0.1, 0.0])
    n = torch.tensor([1.0 + 0.5, -0.5, 1.0])  # out-of-range neighbours push x + sign*eps past 1 / below 0
    out = linf_combine(x, n, eps)
    assert torch.allclose(out, torch.tensor([1.0, 0.0, 0.4]))


def test_combine_rejects_bad_budget_and_shapes():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="pixel units"):
        linf_combine(x, x, 76.5)
    with pytest.raises(ValueError, match="same shape"):
        linf_combine(x, torch.zeros(4), 0.3)


# ------------------------------------------------------------------------------------------- transforms


def test_grid_is_the_reference_grid():
    assert len(GRID) == 775
    assert sorted({t[0] for t in GRID}) == [-3.0, -1.5, 0.0, 1.5, 3.0]
    assert sorted({t[1] for t in GRID}) == [-3.0, -1.5, 0.0, 1.5, 3.0]
    assert sorted({t[2] for t in GRID}) == [float(r) for r in range(-30, 31, 2)]
    assert len(set(GRID)) == 775


def test_allowed_targets_table():
    assert ALLOWED_TARGETS == {0: (4, 6, 8, 9), 1: (4, 6, 7, 9), 2: (8,), 3: (8,), 4: (8, 9), 5: (3, 8),
                               6: (0,), 7: (2, 3), 8: (3,), 9: (3, 4, 5)}
    assert all(src not in tgts for src, tgts in ALLOWED_TARGETS.items())


def test_forward_and_inverse_matrices_compose_to_identity():
    fwd, inv = forward_matrices(GRID), inverse_matrices(GRID)
    eye = torch.eye(3, dtype=torch.float64).expand(len(GRID), 3, 3)
    assert torch.allclose(fwd @ inv, eye, atol=1e-12)
    assert torch.allclose(inv @ fwd, eye, atol=1e-12)


def test_transform_directions_and_integer_shift():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 5, 20] = 1.0  # row 5, column 20: upper right of the centre (13.5, 13.5)
    rot = apply_transforms(x, [(0.0, 0.0, 90.0)])  # counter-clockwise on screen: to the upper left
    assert rot[0, 0].argmax().item() == 7 * 28 + 5
    shifted = apply_transforms(x, [(2.0, 1.0, 0.0)])  # tx right, ty down
    assert shifted[0, 0].argmax().item() == 6 * 28 + 22
    assert torch.allclose(shifted.sum(), torch.tensor(1.0))


def test_exact_inverse_round_trips_where_naive_undo_does_not():
    x = _blob(cx=13.0, cy=14.5, sx=2.5, sy=3.5).repeat(40, 1, 1, 1)  # compact: nothing leaves the frame
    idx = torch.linspace(0, len(GRID) - 1, 40).long()
    t = torch.tensor(GRID)[idx]
    back = invert_transforms(apply_transforms(x, t), t)
    interior = (slice(None), 0, slice(6, 22), slice(6, 22))
    # Two bilinear resamplings blur a little (measured <= 0.057 on this blob) ...
    assert (back - x)[interior].abs().max() < 0.07
    # ... but nothing moves: the centre of mass comes back to within a few hundredths of a pixel.
    assert (_centroid(back) - _centroid(x)).norm(dim=1).max() < 0.05
    # The reference's undo (rotate by -r, then shift by -t) displaces the image by (R^-1 - I) t.
    zero_t = torch.stack([torch.zeros(40), torch.zeros(40), -t[:, 2]], 1)
    shift_t = torch.stack([-t[:, 0], -t[:, 1], torch.zeros(40)], 1)
    naive = apply_transforms(apply_transforms(apply_transforms(x, t), zero_t), shift_t)
    both = (t[:, :2].abs().sum(1) > 0) & (t[:, 2].abs() >= 10)
    assert both.sum() > 5
    assert (_centroid(naive) - _centroid(x)).norm(dim=1)[both].min() > 0.2


def _centroid(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 2) centre of mass (column, row)."""
    r = torch.arange(images.shape[-1], dtype=images.dtype)
    mass = images[:, 0].sum((1, 2))
    return torch.stack([(images[:, 0] * r).sum((1, 2)) / mass, (images[:, 0] * r[:, None]).sum((1, 2)) / mass], 1)


def test_transform_all_matches_per_image_transforms():
    x = torch.rand(3, 1, 28, 28)
    out = transform_all(x, SMALL_GRID)
    assert out.shape == (3, len(SMALL_GRID), 28, 28)
    for i in range(3):
        one = apply_transforms(x[i : i + 1].expand(len(SMALL_GRID), 1, 28, 28), SMALL_GRID)
        assert torch.allclose(out[i], one[:, 0], atol=1e-6)


# ----------------------------------------------------------------------------------------------- search


def _brute_force(x, y, pool, pool_labels, eps, grid, exclude=-1):
    """Double loop over (transform, pool image) per allowed target, then combine and least ink."""
    best_removed, best = math.inf, None
    moved = transform_all(x.view(1, 1, 28, 28), grid)[0]
    for c in ALLOWED_TARGETS[int(y)]:
        best_d, pair = math.inf, None
        for t, j in itertools.product(range(len(grid)), range(len(pool))):
            if int(pool_labels[j]) != c or j == exclude:
                continue
            d = float(((moved[t] - pool[j, 0]) ** 2).sum())
            if d < best_d:
                best_d, pair = d, (t, j)
        t, j = pair
        aligned = invert_transforms(pool[j : j + 1], [grid[t]])
        x_star = linf_combine(x.view(1, 1, 28, 28), aligned, eps)
        removed = float(ink_removed(x.view(1, 1, 28, 28), x_star))
        if removed < best_removed:
            best_removed, best = removed, (c, j, t, x_star[0], math.sqrt(best_d))
    return best


@pytest.mark.slow  # seconds of computation (searches, attacks, training steps)
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_search_equals_brute_force_double_loop(sample, mode):
    pool_idx = torch.cat([(sample.train.labels == c).nonzero().squeeze(1)[:8] for c in range(10)])
    pool = sample.train.images[pool_idx].float() / 255
    pool_labels = sample.train.labels[pool_idx]
    q, qy = sample.test.images[:5].float() / 255, sample.test.labels[:5]
    # A shortlist smaller than a class (8 images) makes fast mode re-rank only part of it.
    fast = FastParams(components=16, shortlist=5, coarse_translations=(0.0,), coarse_rotations=(0.0,))
    got = generate(q, qy, pool, pool_labels, eps=0.3, mode=mode, grid=SMALL_GRID, chunk_size=2, fast=fast)
    for i in range(5):
        c, j, t, x_star, dist = _brute_force(q[i], qy[i], pool, pool_labels, 0.3, SMALL_GRID)
        if mode == "exact":
            assert int(got.target[i]) == c and int(got.neighbour_index[i]) == j
            assert got.transform[i].tolist() == list(SMALL_GRID[t])
            assert torch.allclose(got.x_star[i], x_star, atol=1e-6)
            assert abs(float(got.distance[i]) - dist) < 1e-4
        else:  # the shortlist can miss, but never finds a closer pair than the true minimum
            assert float(got.distance[i]) >= dist - 1e-4


@pytest.mark.parametrize("residual", [True, False])
def test_fast_with_full_shortlist_equals_exact(sample, residual):
    """Any coarse grid (here one outside the search grid, warped separately) and either bound: with a shortlist
    as large as the class, fast re-ranks everything and must return exactly what exact returns."""
    pool_idx = torch.cat([(sample.train.labels == c).nonzero().squeeze(1)[:12] for c in range(10)])
    pool, pool_labels = sample.train.images[pool_idx], sample.train.labels[pool_idx]
    q, qy = sample.test.images[:6], sample.test.labels[:6]
    fast = FastParams(components=8, shortlist=12, coarse_translations=(0.5,), coarse_rotations=(-5.0, 5.0),
                      residual=residual)
    exact = generate(q, qy, pool, pool_labels, mode="exact", grid=SMALL_GRID, chunk_size=4)
    got = generate(q, qy, pool, pool_labels, mode="fast", grid=SMALL_GRID, chunk_size=4, fast=fast)
    for name in InvarianceSet.TENSORS:
        assert torch.equal(getattr(exact, name), getattr(got, name)), name


@pytest.mark.slow
def test_exclude_self_really_excludes():
    x = _blob().clone()
    other = apply_transforms(x, [(1.5, 0.0, 0.0)]) * 0.9
    # Query of class 2 (target 8 only). Pool: the query itself labelled 8 (index 1), a shifted fainter copy.
    pool = torch.cat([torch.zeros(1, 1, 28, 28), x, other, x * 0.5])
    pool_labels = torch.tensor([3, 8, 8, 8])
    for mode in ("exact", "fast"):
        fast = FastParams(components=8, shortlist=2)
        free = generate(x, torch.tensor([2]), pool, pool_labels, mode=mode, fast=fast)
        assert int(free.neighbour_index[0]) == 1 and float(free.distance[0]) < 1e-5
        excl = generate(x, torch.tensor([2]), pool, pool_labels, mode=mode, fast=fast,
                        exclude_self=torch.tensor([1]))
        assert int(excl.neighbour_index[0]) == 2  # the shifted copy, reached by the grid's tx = 1.5
        assert float(excl.distance[0]) > 0.1
        assert excl.transform[0].tolist() == [1.5, 0.0, 0.0]
        nobody = generate(x, torch.tensor([2]), pool, pool_labels, mode=mode, fast=fast,
                          exclude_self=torch.tensor([-1]))
        assert int(nobody.neighbour_index[0]) == 1


def test_excluding_the_only_candidate_is_a_clear_error():
    x = _blob()
    with pytest.raises(ValueError, match="no pool image of class 8"):
        generate(x, torch.tensor([3]), x, torch.tensor([8]), exclude_self=torch.tensor([0]))


def test_least_ink_target_and_table_order_tie_break():
    x = _blob()
    blank = torch.zeros_like(x)
    # Class 0 may become 4, 6, 8 or 9. Only the 6 is a copy of x: every other target removes all the ink.
    pool = torch.cat([blank, x, blank, blank])
    out = generate(x, torch.tensor([0]), pool, torch.tensor([4, 6, 8, 9]), grid=SMALL_GRID)
    assert int(out.target[0]) == 6 and int(out.neighbour_index[0]) == 1
    assert torch.allclose(out.x_star, x, atol=1e-6)
    # Equal ink removed (copies for 4 and 9): the earlier class of the table wins, as in the reference.
    pool = torch.cat([x, blank, blank, x])
    out = generate(x, torch.tensor([0]), pool, torch.tensor([4, 6, 8, 9]), grid=SMALL_GRID)
    assert int(out.target[0]) == 4
    # Targets outside the table are never considered, even when they would be perfect.
    pool = torch.cat([x, blank])
    out = generate(x, torch.tensor([3]), pool, torch.tensor([5, 8]), grid=SMALL_GRID)
    assert int(out.target[0]) == 8 and int(out.neighbour_index[0]) == 1


@pytest.mark.slow
def test_uint8_and_float_inputs_agree_and_results_are_deterministic(sample):
    q, qy = sample.test.images[:6], sample.test.labels[:6]
    pool, pool_y = sample.train.images[:400], sample.train.labels[:400]
    a = generate(q, qy, pool, pool_y, mode="fast", grid=SMALL_GRID)
    b = generate(q.float() / 255, qy, pool.float() / 255, pool_y, mode="fast", grid=SMALL_GRID)
    c = generate(q, qy, pool, pool_y, mode="fast", grid=SMALL_GRID)
    for name in InvarianceSet.TENSORS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert torch.equal(getattr(a, name), getattr(c, name)), name
    assert a.x_star.dtype == torch.float32 and float(a.x_star.min()) >= 0 and float(a.x_star.max()) <= 1
    assert float(((a.x_star - q.float() / 255).abs()).max()) <= 0.3 + 1e-6


@pytest.mark.slow
def test_fast_agrees_with_exact_on_real_digits(sample):
    q, qy = sample.test.images[:100], sample.test.labels[:100]
    exact = generate(q, qy, sample.train.images, sample.train.labels, mode="exact", chunk_size=32)
    fast = generate(q, qy, sample.train.images, sample.train.labels, mode="fast", chunk_size=32)
    stats = agreement(exact, fast)
    print(f"\nfast vs exact on 100 mnist-sample test queries (4000-image pool): {stats}")
    assert stats["same_neighbour"] >= 0.99
    assert stats["distance_ratio"] >= 1.0 - 1e-6 or stats["same_target"] < 1.0


# ------------------------------------------------------------------------------------------ result type


def test_invariance_set_round_trips_through_torch_save(tmp_path):
    n = 5
    s = InvarianceSet(x_star=torch.rand(n, 1, 28, 28), target=torch.arange(n), neighbour_index=torch.arange(n) * 3,
                      transform=torch.rand(n, 3), distance=torch.rand(n), eps=0.3, mode="exact")
    torch.save(s.to_dict(), tmp_path / "s.pt")
    back = InvarianceSet.from_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert back.eps == 0.3 and back.mode == "exact" and len(back) == n
    assert all(torch.equal(getattr(s, k), getattr(back, k)) for k in InvarianceSet.TENSORS)
    part = s.select([4, 0])
    assert part.target.tolist() == [4, 0] and torch.equal(part.x_star[1], s.x_star[0])
    assert s.to("cpu").x_star.device.type == "cpu"
    with pytest.raises(ValueError, match="missing"):
        InvarianceSet.from_dict({"x_star": s.x_star})
    with pytest.raises(ValueError, match="5 rows"):
        InvarianceSet(x_star=s.x_star, target=torch.arange(4), neighbour_index=s.neighbour_index,
                      transform=s.transform, distance=s.distance, eps=0.3, mode="exact")


def test_bad_inputs_name_the_problem():
    x = _blob()
    with pytest.raises(ValueError, match="divided by 255"):
        generate(x * 255, torch.tensor([0]), x, torch.tensor([4]))
    with pytest.raises(ValueError, match="classes 0..9"):
        generate(x, torch.tensor([12]), x, torch.tensor([4]))
    with pytest.raises(ValueError, match="unknown mode"):
        generate(x, torch.tensor([0]), x, torch.tensor([4]), mode="approx")
    with pytest.raises(ValueError, match=r"\(N, 1, H, H\)"):
        generate(x[0], torch.tensor([0]), x, torch.tensor([4]))
    with pytest.raises(ValueError, match="no image of class 8"):
        generate(x, torch.tensor([2]), x, torch.tensor([4]))


def test_agreement_counts_matches():
    base = InvarianceSet(x_star=torch.zeros(4, 1, 28, 28), target=torch.tensor([1, 2, 3, 4]),
                         neighbour_index=torch.tensor([10, 11, 12, 13]), transform=torch.zeros(4, 3),
                         distance=torch.ones(4), eps=0.3, mode="exact")
    other = InvarianceSet(x_star=torch.zeros(4, 1, 28, 28), target=torch.tensor([1, 2, 3, 5]),
                          neighbour_index=torch.tensor([10, 11, 99, 98]), transform=torch.zeros(4, 3),
                          distance=torch.tensor([1.0, 1.0, 2.0, 2.0]), eps=0.3, mode="fast")
    stats = agreement(base, other)
    assert stats["same_neighbour"] == 0.5 and stats["same_target"] == 0.75
    assert stats["distance_ratio"] == pytest.approx(1.5)


def test_runs_on_the_device_of_the_inputs():
    x = _blob()
    out = generate(x, torch.tensor([6]), torch.cat([x, x]), torch.tensor([0, 0]), grid=SMALL_GRID,
                   device=torch.device("cpu"))
    assert out.x_star.device.type == "cpu" and F.mse_loss(out.x_star, x) < 1e-10
