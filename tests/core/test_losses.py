"""Tests of core.losses: distances by hand, miners against brute force over explicit triplets, objective."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.losses import (
    VARIANT_WEIGHTS,
    AngularDistance,
    BatchHardMiner,
    HardestNegativeMiner,
    ObjectiveWeights,
    RandomNegativeMiner,
    TripletLoss,
    TripletResult,
    angular_distance,
    make_distance,
    objective,
    objective_terms,
    pairwise_angular_distance,
    set_feature_norm,
    terms_to_floats,
)
from core.registry import make_miner

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SEEDS = [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------ pure-Python reference


def py_dist(u: list[float], v: list[float], signed: bool = False) -> float:
    """1 − |cos| (the paper's Eq. 1), or 1 − cos when ``signed``."""
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    nu = math.sqrt(sum(a * a for a in u))
    nv = math.sqrt(sum(b * b for b in v))
    return 1.0 - (dot if signed else abs(dot)) / (nu * nv)


def py_norm(u: list[float]) -> float:
    return math.sqrt(sum(a * a for a in u))


def batch(seed: int, n: int = 12, d: int = 4, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    anchor = torch.randn(n, d, generator=g, dtype=torch.float64)
    positive = anchor + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=g)
    if labels.unique().numel() < 2:
        labels[0] = (labels[0] + 1) % classes
    return anchor, positive, labels


def brute_force(anchor, positive, labels, margin: float, negatives: str, batch_hard: bool, signed: bool = False,
                with_neg_dist: bool = False):
    """Enumerate every explicit triplet (i, p, n); per anchor keep the one with the largest hinge.

    Hardest-negative mining is exactly the max hinge over negatives with p = i; batch-hard is the max over all
    same-class p and other-class n. Returns (loss, n_valid, norm term, active fraction), and the mean distance
    from the anchor to its chosen negative when ``with_neg_dist``.
    """
    a, p, y = anchor.tolist(), positive.tolist(), labels.tolist()
    cands = a if negatives == "natural" else p
    losses, norms, neg_dists, active = [], [], [], 0
    for i in range(len(a)):
        best = None  # (hinge, d_ap, -d_an, j_p, j_n): ties broken towards larger d_ap, then smaller d_an
        pos_choices = [j for j in range(len(a)) if y[j] == y[i]] if batch_hard else [i]
        for jp in pos_choices:
            for jn in range(len(a)):
                if y[jn] == y[i]:
                    continue
                d_ap, d_an = py_dist(a[i], p[jp], signed), py_dist(a[i], cands[jn], signed)
                key = (max(d_ap - d_an + margin, 0.0), d_ap, -d_an, jp, jn)
                if best is None or key[:3] > best[:3]:
                    best = key
        if best is None:
            continue
        losses.append(best[0])
        active += best[0] > 0
        norms.append(py_norm(a[i]) + py_norm(p[best[3]]) + py_norm(cands[best[4]]))
        neg_dists.append(-best[2])
    if not losses:
        return (0.0, 0, 0.0, 0.0) + ((0.0,) if with_neg_dist else ())
    out = sum(losses) / len(losses), len(losses), sum(norms) / len(norms), active / len(losses)
    return out + ((sum(neg_dists) / len(neg_dists),) if with_neg_dist else ())


# ------------------------------------------------------------------------------ angular distance


def test_angular_distance_by_hand():
    u = torch.tensor([[3.0, 4.0], [1.0, 0.0], [2.0, -1.0]], dtype=torch.float64)
    v = torch.tensor([[4.0, 3.0], [-1.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    expected = [1 - 24 / 25, 1 - 1 / math.sqrt(2), 1.0]
    assert angular_distance(u, v).tolist() == pytest.approx(expected, abs=1e-12)
    for row in range(3):
        assert angular_distance(u, v)[row].item() == pytest.approx(py_dist(u[row].tolist(), v[row].tolist()))


def test_angular_distance_properties():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(64, 5, generator=g, dtype=torch.float64)
    v = torch.randn(64, 5, generator=g, dtype=torch.float64)
    d = angular_distance(u, v)
    assert ((d >= 0) & (d <= 1)).all()
    torch.testing.assert_close(angular_distance(u, -v), d)  # |u·v| makes the sign irrelevant
    torch.testing.assert_close(angular_distance(-u, v), d)
    torch.testing.assert_close(angular_distance(3.0 * u, 0.25 * v), d)  # scale invariance
    torch.testing.assert_close(angular_distance(v, u), d)  # symmetry
    torch.testing.assert_close(angular_distance(u, 2.5 * u), torch.zeros(64, dtype=torch.float64))
    torch.testing.assert_close(angular_distance(u, -0.5 * u), torch.zeros(64, dtype=torch.float64))
    # Orthogonal: Gram–Schmidt v against u.
    w = v - (v * u).sum(1, keepdim=True) / (u * u).sum(1, keepdim=True) * u
    torch.testing.assert_close(angular_distance(u, w), torch.ones(64, dtype=torch.float64))
    # Not trivially constant: random pairs spread over the range.
    assert d.std() > 0.1


@pytest.mark.parametrize("device", DEVICES)
def test_zero_vectors_are_finite_including_gradients(device):
    u = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], device=device, requires_grad=True)
    v = torch.tensor([[1.0, -1.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], device=device, requires_grad=True)
    d = angular_distance(u, v)
    assert torch.isfinite(d).all() and ((d >= 0) & (d <= 1)).all()
    d.sum().backward()
    assert torch.isfinite(u.grad).all() and torch.isfinite(v.grad).all()
    pw = pairwise_angular_distance(u, v)
    assert torch.isfinite(pw).all() and ((pw >= 0) & (pw <= 1)).all()
    u.grad = None
    pairwise_angular_distance(u, u).sum().backward()
    assert torch.isfinite(u.grad).all()


def test_half_precision_zero_vectors_stay_finite():
    u = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float16)
    v = torch.tensor([[1.0, 0.0], [1.0, -1.0]], dtype=torch.float16)
    d = angular_distance(u, v)
    assert torch.isfinite(d).all() and d.tolist() == [1.0, 1.0]
    assert torch.isfinite(pairwise_angular_distance(u, u.to(torch.bfloat16))).all()


def test_pairwise_matches_rowwise():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(7, 4, generator=g, dtype=torch.float64)
    b = torch.randn(5, 4, generator=g, dtype=torch.float64)
    pw = pairwise_angular_distance(a, b)
    assert pw.shape == (7, 5)
    for i in range(7):
        torch.testing.assert_close(pw[i], angular_distance(a[i].expand(5, 4), b))
    dist = AngularDistance()
    torch.testing.assert_close(dist.pairwise(a, b), pw)
    torch.testing.assert_close(dist(a[:5], b), angular_distance(a[:5], b))


def test_distance_shape_errors():
    with pytest.raises(ValueError, match="pairwise_angular_distance"):
        angular_distance(torch.ones(3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="same d"):
        pairwise_angular_distance(torch.ones(3, 4), torch.ones(2, 5))
    with pytest.raises(ValueError, match="eps"):
        AngularDistance(eps=0.0)


# ------------------------------------------------------------------------------ triplet loss vs brute force


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("negatives", ["natural", "perturbed"])
@pytest.mark.parametrize("miner", ["hardest", "batch_hard"])
@pytest.mark.parametrize("margin", [0.05, 0.3])
def test_deterministic_miners_match_brute_force(seed, negatives, miner, margin):
    anchor, positive, labels = batch(seed)
    result = TripletLoss(margin=margin, miner=make_miner(miner), negatives=negatives)(anchor, positive, labels)
    loss, n_valid, norm, active = brute_force(anchor, positive, labels, margin, negatives,
                                              batch_hard=miner == "batch_hard")
    assert result.loss.item() == pytest.approx(loss, abs=1e-12)
    assert result.norm.item() == pytest.approx(norm, abs=1e-12)
    assert result.n_valid == n_valid == len(labels)
    assert result.active_fraction == pytest.approx(active)
    assert isinstance(result.n_valid, int) and isinstance(result.active_fraction, float)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("negatives", ["natural", "perturbed"])
@pytest.mark.parametrize("miner", ["hardest", "batch_hard"])
@pytest.mark.parametrize("distance", ["abs_cos", "cos"])
def test_both_distances_and_the_negative_distance_match_brute_force(seed, negatives, miner, distance):
    """The loss, active share and mean mined-negative distance of either distance, against explicit triplets."""
    anchor, positive, labels = batch(seed)
    d = make_distance(distance)
    loss_fn = TripletLoss(margin=0.2, miner=make_miner(miner, d), negatives=negatives, distance=d)
    result = loss_fn(anchor, positive, labels)
    loss, n_valid, norm, active, neg_dist = brute_force(anchor, positive, labels, 0.2, negatives,
                                                        batch_hard=miner == "batch_hard",
                                                        signed=distance == "cos", with_neg_dist=True)
    assert result.loss.item() == pytest.approx(loss, abs=1e-12)
    assert result.norm.item() == pytest.approx(norm, abs=1e-12)
    assert result.active_fraction == pytest.approx(active)
    assert result.neg_distance.item() == pytest.approx(neg_dist, abs=1e-12)
    assert not result.neg_distance.requires_grad


def test_signed_distance_by_hand_and_its_properties():
    u = torch.tensor([[3.0, 4.0], [1.0, 0.0], [2.0, -1.0]], dtype=torch.float64)
    v = torch.tensor([[4.0, 3.0], [-1.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    assert angular_distance(u, v, signed=True).tolist() == pytest.approx([1 - 24 / 25, 1 + 1 / math.sqrt(2), 1.0])
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 5, generator=g, dtype=torch.float64), torch.randn(64, 5, generator=g, dtype=torch.float64)
    signed = angular_distance(a, b, signed=True)
    assert ((signed >= 0) & (signed <= 2)).all() and (signed > 1).any()
    torch.testing.assert_close(angular_distance(a, -b, signed=True), 2.0 - signed)  # −h is the far side
    torch.testing.assert_close(angular_distance(a, -0.5 * a, signed=True), torch.full((64,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(pairwise_angular_distance(a, b, signed=True).diagonal(), signed)
    # The two agree exactly where cos ≥ 0 and 1 − |cos| ≤ 1 − cos everywhere.
    unsigned = angular_distance(a, b)
    assert (unsigned <= signed + 1e-12).all()
    torch.testing.assert_close(unsigned[signed <= 1], signed[signed <= 1])


def test_make_distance_names():
    assert not make_distance("abs_cos").signed and make_distance("cos").signed
    with pytest.raises(ValueError, match="abs_cos, cos"):
        make_distance("euclidean")


@pytest.mark.parametrize("seed", SEEDS)
def test_hardest_negative_is_the_argmin_over_other_classes(seed):
    anchor, positive, labels = batch(seed)
    mined = HardestNegativeMiner()(anchor, positive, anchor, labels)
    a = anchor.tolist()
    for i in range(len(a)):
        others = [j for j in range(len(a)) if labels[j] != labels[i]]
        assert mined.negative_idx[i].item() == min(others, key=lambda j: py_dist(a[i], a[j]))
        assert mined.positive_idx[i].item() == i
    bh = BatchHardMiner()(anchor, positive, positive, labels)
    p = positive.tolist()
    for i in range(len(a)):
        same = [j for j in range(len(a)) if labels[j] == labels[i]]
        others = [j for j in range(len(a)) if labels[j] != labels[i]]
        assert bh.positive_idx[i].item() == max(same, key=lambda j: py_dist(a[i], p[j]))
        assert bh.negative_idx[i].item() == min(others, key=lambda j: py_dist(a[i], p[j]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("negatives", ["natural", "perturbed"])
def test_random_miner_value_matches_explicit_triplet(seed, negatives):
    anchor, positive, labels = batch(seed)
    loss_fn = TripletLoss(margin=0.2, miner=RandomNegativeMiner(), negatives=negatives)
    result = loss_fn(anchor, positive, labels, generator=torch.Generator().manual_seed(seed))
    mined = RandomNegativeMiner(torch.Generator().manual_seed(seed))(
        anchor, positive, anchor if negatives == "natural" else positive, labels)
    a, p = anchor.tolist(), positive.tolist()
    cands = a if negatives == "natural" else p
    hinges = [max(py_dist(a[i], p[i]) - py_dist(a[i], cands[j]) + 0.2, 0.0)
              for i, j in enumerate(mined.negative_idx.tolist())]
    assert result.loss.item() == pytest.approx(sum(hinges) / len(hinges), abs=1e-12)
    # A random negative can never give a larger hinge than the hardest one.
    hardest = TripletLoss(margin=0.2, miner=HardestNegativeMiner(), negatives=negatives)(anchor, positive, labels)
    assert result.loss.item() <= hardest.loss.item() + 1e-12


def test_random_miner_reproducible_other_class_and_uniform():
    anchor, positive, labels = batch(7, n=16)
    miner = RandomNegativeMiner()
    first = miner(anchor, positive, anchor, labels, generator=torch.Generator().manual_seed(3))
    again = miner(anchor, positive, anchor, labels, generator=torch.Generator().manual_seed(3))
    other = miner(anchor, positive, anchor, labels, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first.negative_idx, again.negative_idx)
    assert not torch.equal(first.negative_idx, other.negative_idx)
    seeded = RandomNegativeMiner(torch.Generator().manual_seed(3))(anchor, positive, anchor, labels)
    assert torch.equal(seeded.negative_idx, first.negative_idx)

    small = torch.tensor([0, 0, 1, 1, 1, 2])
    emb = torch.randn(6, 4)
    gen = torch.Generator().manual_seed(0)
    draws = 2000
    counts = torch.zeros(6, 6)
    for _ in range(draws):
        idx = miner(emb, emb, emb, small, generator=gen).negative_idx
        assert (small[idx] != small).all()
        counts[torch.arange(6), idx] += 1
    # Anchor 0 has 4 other-class candidates (2..5): each ≈ 1/4 (binomial sd ≈ 0.01).
    assert counts[0, :2].sum() == 0
    assert ((counts[0, 2:] / draws - 0.25).abs() < 0.05).all()
    # Anchor 2 has 3 candidates (0, 1, 5).
    assert ((counts[2, [0, 1, 5]] / draws - 1 / 3).abs() < 0.05).all()


@pytest.mark.parametrize("miner", ["hardest", "random", "batch_hard"])
@pytest.mark.parametrize("negatives", ["natural", "perturbed"])
def test_single_class_batch_has_no_valid_triplet(miner, negatives):
    anchor = torch.randn(8, 4, requires_grad=True)
    positive = torch.randn(8, 4, requires_grad=True)
    labels = torch.full((8,), 3)
    result = TripletLoss(miner=make_miner(miner), negatives=negatives)(anchor, positive, labels,
                                                           generator=torch.Generator().manual_seed(0))
    assert result.n_valid == 0 and result.active_fraction == 0.0
    assert result.loss.item() == 0.0 and result.norm.item() == 0.0
    assert result.loss.requires_grad
    (result.loss + result.norm).backward()
    assert torch.equal(anchor.grad, torch.zeros_like(anchor))


@pytest.mark.parametrize("miner", ["hardest", "random", "batch_hard"])
@pytest.mark.parametrize("negatives", ["natural", "perturbed"])
def test_gradients_flow_to_triplet_members_not_through_mining(miner, negatives):
    anchor0, positive0, labels = batch(11)
    anchor = anchor0.clone().requires_grad_(True)
    positive = positive0.clone().requires_grad_(True)
    loss_fn = TripletLoss(margin=2.0, miner=make_miner(miner), negatives=negatives)  # margin > 1: every hinge active
    result = loss_fn(anchor, positive, labels, generator=torch.Generator().manual_seed(5))
    assert result.active_fraction == 1.0
    (result.loss + result.norm).backward()

    cands = anchor0 if negatives == "natural" else positive0
    mined = loss_fn.miner(anchor0, positive0, cands, labels, generator=torch.Generator().manual_seed(5))
    assert not mined.negative_idx.requires_grad and not mined.positive_idx.requires_grad

    # Same loss with the indices frozen: gradients must agree exactly (mining is a constant).
    a2 = anchor0.clone().requires_grad_(True)
    p2 = positive0.clone().requires_grad_(True)
    c2 = a2 if negatives == "natural" else p2
    pos, neg = p2[mined.positive_idx], c2[mined.negative_idx]
    hinge = angular_distance(a2, pos) - angular_distance(a2, neg) + 2.0
    norm = (a2.norm(dim=1) + pos.norm(dim=1) + neg.norm(dim=1)).mean()
    (hinge.mean() + norm).backward()
    torch.testing.assert_close(anchor.grad, a2.grad)
    torch.testing.assert_close(positive.grad, p2.grad)

    # Every row used as a negative receives a gradient from the D(a, n) term.
    neg_rows = mined.negative_idx.unique()
    grad_holder = anchor.grad if negatives == "natural" else positive.grad
    assert (grad_holder[neg_rows].abs().sum(dim=1) > 0).all()
    assert (anchor.grad.abs().sum(dim=1) > 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_triplet_runs_on_device(device):
    anchor, positive, labels = batch(2)
    cpu = TripletLoss()(anchor, positive, labels)
    on = TripletLoss(miner=RandomNegativeMiner())(anchor.to(device), positive.to(device), labels.to(device),
                                     generator=torch.Generator(device=device).manual_seed(0))
    assert on.loss.device.type == device
    assert TripletLoss()(anchor.to(device), positive.to(device), labels.to(device)).loss.item() == \
        pytest.approx(cpu.loss.item(), abs=1e-9)


def test_triplet_errors_are_explicit():
    with pytest.raises(ValueError, match="hardest, random, batch_hard"):
        make_miner("semihard")
    with pytest.raises(TypeError, match="Miner object"):
        TripletLoss(miner="hardest")
    with pytest.raises(ValueError, match="natural, perturbed"):
        TripletLoss(negatives="clean")
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin=-0.1)
    loss_fn = TripletLoss()
    with pytest.raises(ValueError, match="equal shape"):
        loss_fn(torch.ones(4, 3), torch.ones(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        loss_fn(torch.ones(4, 3), torch.ones(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"):
        loss_fn(torch.ones(0, 3), torch.ones(0, 3), torch.zeros(0, dtype=torch.long))


# ------------------------------------------------------------------------------ objective


class SpyTriplet(TripletLoss):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.positives: list[torch.Tensor] = []

    def __call__(self, anchor, positive, labels, generator=None) -> TripletResult:
        self.positives.append(positive)
        return super().__call__(anchor, positive, labels, generator)


def objective_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    n = 16
    labels = torch.randint(0, 10, (n,), generator=g)
    tensors = {name: torch.randn(n, k, generator=g, dtype=torch.float64, requires_grad=True)
               for name, k in (("logits_clean", 10), ("logits_adv", 10), ("h_clean", 4), ("h_adv", 4),
                               ("h_inv", 4))}
    return tensors, labels


def brute_set_norm(t, labels, use_sa: bool, use_ia: bool) -> float:
    """Σ over the distinct embeddings of each anchor's triplets (hardest natural negatives), mean over anchors."""
    a = t["h_clean"].detach().tolist()
    lab = labels.tolist()
    total, anchors = 0.0, 0
    for i in range(len(a)):
        others = [j for j in range(len(a)) if lab[j] != lab[i]]
        if not others:
            continue
        anchors += 1
        used = {("clean", i)}
        for name, on in (("h_adv", use_sa), ("h_inv", use_ia)):
            if on:
                used.add((name, i))  # the positive: this image's own perturbed embedding
                ref = TripletLoss()
                d = ref.distance.pairwise(t["h_clean"][i:i + 1].detach(), t["h_clean"].detach())[0]
                used.add(("clean", min(others, key=lambda j: d[j].item())))  # natural hardest negative
        total += sum(py_norm(t[{"clean": "h_clean"}.get(k, k)][j].detach().tolist()) for k, j in used)
    return total / max(anchors, 1) if (use_sa or use_ia) else 0.0


def test_feature_norm_counts_each_embedding_once_on_a_hand_made_batch():
    # Two classes, two images each; embeddings chosen so every norm is a distinct power of two (a miscount shows).
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 0.1], [0.0, -8.0]])
    p_sa = torch.tensor([[16.0, 0.0], [0.0, 32.0], [64.0, 0.0], [0.0, -128.0]])
    p_ia = torch.tensor([[256.0, 0.0], [0.0, 512.0], [1024.0, 0.0], [0.0, -2048.0]])
    labels = torch.tensor([0, 1, 0, 1])
    trip = TripletLoss(margin=0.05)
    sa, ia = trip(a, p_sa, labels), trip(a, p_ia, labels)
    # Hardest natural negatives by hand: anchors 0 and 2 see rows 1 and 3 at equal D (ties → first row, 1);
    # anchors 1 and 3 are nearer to row 2 (it has a small y component) than to row 0.
    assert sa.neg_index.tolist() == ia.neg_index.tolist() == [1, 2, 1, 2]
    an, n_idx = a.norm(dim=1), torch.tensor([1, 2, 1, 2])
    expected_sa = (an + p_sa.norm(dim=1) + an[n_idx]).mean()
    expected_both = (an + p_sa.norm(dim=1) + p_ia.norm(dim=1) + an[n_idx]).mean()  # anchor and negative once
    assert set_feature_norm({"sa": sa}).item() == pytest.approx(expected_sa.item())
    assert set_feature_norm({"sa": sa, "ia": ia}).item() == pytest.approx(expected_both.item())
    # The old per-type sum counted the anchor and the shared negative twice.
    assert (sa.norm + ia.norm).item() == pytest.approx((expected_both + an.mean() + an[n_idx].mean()).item())


def test_ml_sa_and_ml_sa_ia_weigh_the_anchor_norm_the_same():
    t, labels = objective_inputs(3)
    grads = {}
    for variant in ("ml_sa", "ml_sa_ia"):
        w = VARIANT_WEIGHTS[variant]
        only_norm = ObjectiveWeights(0.0, 0.0, 1e-12, 1e-12 if w.lambda_ia else 0.0, 1.0)
        h = t["h_clean"].detach().clone().requires_grad_(True)
        loss, _ = objective_terms(logits_clean=None, logits_adv=None, labels=labels, h_clean=h,
                                  h_adv=t["h_adv"].detach(), h_inv=t["h_inv"].detach(), weights=only_norm,
                                  triplet=TripletLoss())
        (g,) = torch.autograd.grad(loss, h)
        grads[variant] = g
    # d N / d h_i: the anchor (and the shared hardest negatives) weigh the same with or without the IA triplet.
    assert torch.allclose(grads["ml_sa"], grads["ml_sa_ia"], atol=1e-9)


def test_distinct_random_negatives_both_count():
    t, labels = objective_inputs(5)
    trip = TripletLoss(miner=RandomNegativeMiner())
    sa = trip(t["h_clean"], t["h_adv"], labels, torch.Generator().manual_seed(1))
    ia = trip(t["h_clean"], t["h_inv"], labels, torch.Generator().manual_seed(2))
    an = t["h_clean"].norm(dim=1)
    differ = (sa.neg_index != ia.neg_index).double()
    assert differ.sum() > 0
    expected = (an + t["h_adv"].norm(dim=1) + t["h_inv"].norm(dim=1) + an[sa.neg_index]
                + an[ia.neg_index] * differ).mean()
    assert set_feature_norm({"sa": sa, "ia": ia}).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("variant", sorted(VARIANT_WEIGHTS))
def test_objective_equals_hand_assembled_sum(variant):
    w = VARIANT_WEIGHTS[variant]
    t, labels = objective_inputs(0)
    spy = SpyTriplet(margin=0.3)
    loss, logs = objective(labels=labels, weights=w, triplet=spy, **t)

    ref = TripletLoss(margin=0.3)
    ce_c = F.cross_entropy(t["logits_clean"], labels)
    ce_a = F.cross_entropy(t["logits_adv"], labels)
    sa = ref(t["h_clean"], t["h_adv"], labels)
    ia = ref(t["h_clean"], t["h_inv"], labels)
    use_sa, use_ia = w.lambda_sa > 0, w.lambda_ia > 0
    norm = brute_set_norm(t, labels, use_sa, use_ia)
    expected = (w.w_clean * ce_c.item() + w.w_adv * ce_a.item() + w.lambda_sa * sa.loss.item()
                + w.lambda_ia * ia.loss.item() + w.lambda_norm * norm)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert logs["loss"] == pytest.approx(expected, abs=1e-12)
    assert logs["ce_clean"] == pytest.approx(ce_c.item())
    assert logs["ce_adv"] == pytest.approx(ce_a.item())
    assert logs["triplet_sa"] == pytest.approx(sa.loss.item() if use_sa else 0.0)
    assert logs["triplet_ia"] == pytest.approx(ia.loss.item() if use_ia else 0.0)
    assert logs["active_sa"] == pytest.approx(sa.active_fraction if use_sa else 0.0)
    assert logs["active_ia"] == pytest.approx(ia.active_fraction if use_ia else 0.0)
    assert logs["norm"] == pytest.approx(norm)
    assert set(logs) == {"loss", "ce_clean", "ce_adv", "triplet_sa", "triplet_ia", "norm", "active_sa",
                         "active_ia", "neg_dist_sa", "neg_dist_ia"}
    assert all(isinstance(v, float) for v in logs.values())
    # Zero-weight triplet terms are never computed.
    assert [p is t["h_adv"] for p in spy.positives] == [True] * use_sa + [False] * use_ia
    assert len(spy.positives) == use_sa + use_ia
    loss.backward()
    assert t["logits_clean"].grad.abs().sum() > 0 and t["logits_adv"].grad.abs().sum() > 0
    if use_sa:
        assert t["h_clean"].grad.abs().sum() > 0 and t["h_adv"].grad.abs().sum() > 0
    else:
        assert t["h_clean"].grad is None and t["h_adv"].grad is None
    if use_ia:
        assert t["h_inv"].grad.abs().sum() > 0
    else:
        assert t["h_inv"].grad is None


def test_objective_skips_zero_weight_inputs():
    t, labels = objective_inputs(1)
    # ml_sa never needs invariance examples.
    loss, logs = objective(labels=labels, weights=VARIANT_WEIGHTS["ml_sa"], triplet=TripletLoss(),
                           **{**t, "h_inv": None})
    assert logs["triplet_ia"] == 0.0 and torch.isfinite(loss)
    # The baseline needs no embeddings at all.
    spy = SpyTriplet()
    _, logs = objective(labels=labels, weights=VARIANT_WEIGHTS["baseline"], triplet=spy,
                        **{**t, "h_clean": None, "h_adv": None, "h_inv": None})
    assert spy.positives == [] and logs["triplet_sa"] == 0.0 and logs["norm"] == 0.0
    # Pure triplet objective: CE weights 0, CE reported as 0 even with logits absent.
    only_sa = ObjectiveWeights(0.0, 0.0, 1.0, 0.0, 0.0)
    loss, logs = objective(labels=labels, weights=only_sa, triplet=TripletLoss(),
                           **{**t, "logits_clean": None, "logits_adv": None})
    assert logs["ce_clean"] == logs["ce_adv"] == 0.0
    assert loss.item() == pytest.approx(TripletLoss()(t["h_clean"], t["h_adv"], labels).loss.item())


def test_objective_terms_stay_tensors_and_random_miner_is_seeded():
    t, labels = objective_inputs(2)
    kwargs = dict(labels=labels, weights=VARIANT_WEIGHTS["ml_sa_ia"], triplet=TripletLoss(miner=RandomNegativeMiner()),
                  **t)
    loss1, terms = objective_terms(generator=torch.Generator().manual_seed(9), **kwargs)
    loss2, _ = objective_terms(generator=torch.Generator().manual_seed(9), **kwargs)
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in terms.values())
    assert loss1.item() == loss2.item()
    floats = terms_to_floats(terms)
    assert floats["loss"] == pytest.approx(loss1.item())


def test_objective_errors_are_explicit():
    t, labels = objective_inputs(3)
    with pytest.raises(ValueError, match="invariance examples"):
        objective(labels=labels, weights=VARIANT_WEIGHTS["ml_sa_ia"], triplet=TripletLoss(),
                  **{**t, "h_inv": None})
    with pytest.raises(ValueError, match="h_adv"):
        objective(labels=labels, weights=VARIANT_WEIGHTS["ml_sa"], triplet=TripletLoss(),
                  **{**t, "h_adv": None})
    with pytest.raises(ValueError, match="lambda_norm"):
        ObjectiveWeights(0.5, 0.5, 0.5, 0.0, -1e-3)
    with pytest.raises(ValueError, match="w_clean"):
        ObjectiveWeights(float("nan"), 0.5, 0.0, 0.0, 0.0)


def test_variant_weights_match_design():
    assert VARIANT_WEIGHTS["baseline"] == ObjectiveWeights(0.5, 0.5, 0.0, 0.0, 0.0)
    assert VARIANT_WEIGHTS["ml_sa"] == ObjectiveWeights(0.5, 0.5, 0.5, 0.0, 1e-3)
    assert VARIANT_WEIGHTS["ml_sa_ia"] == ObjectiveWeights(0.5, 0.5, 0.5, 0.5, 1e-3)
