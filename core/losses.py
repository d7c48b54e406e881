"""Angular distance, triplet loss with miners, feature-norm term and the training objective (docs/architecture.md).

Structure follows pytorch-metric-learning's split (written from scratch here): a distance object, miners that
run without gradient and return indices, and a loss that takes both. Everything stays on the input's device
and avoids GPU→CPU syncs; the only sync is `terms_to_floats`, meant to be called once per logged batch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from core.registry import DISTANCES, NEGATIVES
from core.registry import VARIANT_WEIGHTS as _WEIGHTS

__all__ = [
    "VARIANT_WEIGHTS",
    "AngularDistance",
    "BatchHardMiner",
    "HardestNegativeMiner",
    "MinedTriplets",
    "Miner",
    "ObjectiveWeights",
    "RandomNegativeMiner",
    "TripletLoss",
    "TripletResult",
    "angular_distance",
    "make_distance",
    "objective",
    "objective_terms",
    "pairwise_angular_distance",
    "terms_to_floats",
]



# --------------------------------------------------------------------------------------------- distance


def _at_least_float32(x: Tensor) -> Tensor:
    # Under fp16/bf16 autocast, eps = 1e-8 would underflow to 0 and zero vectors would give 0/0.
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _cosine_to_distance(dots: Tensor, norms: Tensor, eps: float, signed: bool) -> Tensor:
    cos = dots / norms.clamp_min(eps)
    # Rounding can push |cos| a hair above 1; the clamp keeps D inside [0, 1] (|cos|) or [0, 2] (signed).
    return (1.0 - cos).clamp(0.0, 2.0) if signed else (1.0 - cos.abs()).clamp_min(0.0)


def angular_distance(u: Tensor, v: Tensor, eps: float = 1e-8, signed: bool = False) -> Tensor:
    """Row-wise D(u, v) = 1 − |u·v| / (‖u‖₂‖v‖₂) (paper Eq. 1): (N, d) × (N, d) → (N,), values in [0, 1].

    ``signed``: D = 1 − cos instead, in [0, 2], so that h and −h are far apart (distance "cos"; the paper's |cos|
    treats them as one point although the linear head gives them opposite logits). The norm product is clamped
    below by `eps`, so a zero vector gives D = 1 with finite gradients (|·| and vector_norm both have zero
    subgradient at 0).
    """
    if u.shape != v.shape or u.dim() != 2:
        raise ValueError(f"angular_distance needs two (N, d) tensors of equal shape, got {tuple(u.shape)} "
                         f"and {tuple(v.shape)}; for all pairs use pairwise_angular_distance")
    u, v = _at_least_float32(u), _at_least_float32(v)
    dot = (u * v).sum(dim=1)
    norms = torch.linalg.vector_norm(u, dim=1) * torch.linalg.vector_norm(v, dim=1)
    return _cosine_to_distance(dot, norms, eps, signed)


def pairwise_angular_distance(a: Tensor, b: Tensor, eps: float = 1e-8, signed: bool = False) -> Tensor:
    """All-pairs angular distance: (N, d) × (M, d) → (N, M), entry [i, j] = D(a_i, b_j)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"pairwise_angular_distance needs (N, d) and (M, d) tensors with the same d, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    a, b = _at_least_float32(a), _at_least_float32(b)
    dots = a @ b.T
    norms = torch.linalg.vector_norm(a, dim=1)[:, None] * torch.linalg.vector_norm(b, dim=1)[None, :]
    return _cosine_to_distance(dots, norms, eps, signed)


class AngularDistance:
    """Distance object: `d(u, v)` row-wise, `d.pairwise(a, b)` all pairs. Smaller means closer.

    ``signed=False`` is the paper's D = 1 − |cos| (config distance=abs_cos); ``signed=True`` is D = 1 − cos
    (distance=cos). `make_distance` builds either by its config name.
    """

    def __init__(self, eps: float = 1e-8, signed: bool = False) -> None:
        if not eps > 0:
            raise ValueError(f"AngularDistance eps must be > 0 (it guards zero vectors), got {eps}")
        self.eps = eps
        self.signed = bool(signed)

    def __call__(self, u: Tensor, v: Tensor) -> Tensor:
        return angular_distance(u, v, self.eps, self.signed)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return pairwise_angular_distance(a, b, self.eps, self.signed)

    def __repr__(self) -> str:
        return f"AngularDistance(eps={self.eps}, signed={self.signed})"


def make_distance(name: str) -> AngularDistance:
    """The distance of config key ``distance``: "abs_cos" (1 − |cos|, paper Eq. 1) or "cos" (1 − cos)."""
    return AngularDistance(signed=_choose(name, DISTANCES, "triplet distance") == "cos")


# --------------------------------------------------------------------------------------------- miners


@dataclass
class MinedTriplets:
    """One triplet per anchor i: positive = positive[positive_idx[i]], negative = candidates[negative_idx[i]].

    Anchors whose `valid` is False (no other-class candidate in the batch) carry index 0 and must be masked.
    """

    positive_idx: Tensor
    negative_idx: Tensor
    valid: Tensor


def _other_class(labels: Tensor) -> Tensor:
    return labels[:, None] != labels[None, :]


@runtime_checkable
class Miner(Protocol):
    """What TripletLoss needs from a miner: indices of each anchor's positive and negative, and which are valid.

    ``candidates`` row j belongs to batch example j (natural h(x_j) or its perturbed embedding), so it has label
    labels[j]. A new miner implements this and registers its name in core/registry.py MINERS.
    """

    def __call__(self, anchor: Tensor, positive: Tensor, candidates: Tensor, labels: Tensor,
                 generator: torch.Generator | None = None) -> MinedTriplets: ...


class _DistanceMiner:
    """A miner that takes, for anchor i, the other-class candidate nearest to it; subclasses pick the positive."""

    def __init__(self, distance: AngularDistance | None = None) -> None:
        self.distance = distance if distance is not None else AngularDistance()

    def _positive_idx(self, anchor: Tensor, positive: Tensor, other: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, anchor: Tensor, positive: Tensor, candidates: Tensor, labels: Tensor,
                 generator: torch.Generator | None = None) -> MinedTriplets:
        other = _other_class(labels)
        neg_dist = self.distance.pairwise(anchor, candidates).masked_fill(~other, math.inf)
        return MinedTriplets(self._positive_idx(anchor, positive, other), neg_dist.argmin(dim=1), other.any(dim=1))


class HardestNegativeMiner(_DistanceMiner):
    """Negative of anchor i = the other-class candidate with the smallest D to anchor i; positive = own pair."""

    def _positive_idx(self, anchor: Tensor, positive: Tensor, other: Tensor) -> Tensor:
        return torch.arange(len(other), device=other.device)


class RandomNegativeMiner:
    """Negative of anchor i = a uniformly random other-class candidate; positive = own pair.

    Uniform choice without a host sync: i.i.d. uniform scores, other-class entries only, argmax. The
    generator (constructor or call) makes it reproducible; its device may differ from the embeddings'.
    ``distance`` is accepted (and unused) so that every registered miner is built as ``cls(distance=...)``.
    """

    def __init__(self, generator: torch.Generator | None = None, *, distance: AngularDistance | None = None) -> None:
        self.generator = generator

    @torch.no_grad()
    def __call__(self, anchor: Tensor, positive: Tensor, candidates: Tensor, labels: Tensor,
                 generator: torch.Generator | None = None) -> MinedTriplets:
        gen = generator if generator is not None else self.generator
        other = _other_class(labels)
        shape = other.shape
        if gen is None:
            scores = torch.rand(shape, device=labels.device)
        else:
            scores = torch.rand(shape, generator=gen, device=gen.device).to(labels.device)
        scores = scores.masked_fill(~other, -1.0)
        return MinedTriplets(torch.arange(len(labels), device=labels.device), scores.argmax(dim=1),
                             other.any(dim=1))


class BatchHardMiner(_DistanceMiner):
    """The authors' variant: positive = the same-class perturbed embedding farthest from the anchor (own pair
    included), negative = the other-class candidate nearest to it (use negatives="perturbed" for their setup).
    """

    def _positive_idx(self, anchor: Tensor, positive: Tensor, other: Tensor) -> Tensor:
        return self.distance.pairwise(anchor, positive).masked_fill(other, -math.inf).argmax(dim=1)


# --------------------------------------------------------------------------------------------- triplet loss


@dataclass
class TripletResult:
    """Outcome of one triplet type. Tensors stay on device; the float/int views sync when read."""

    loss: Tensor  # scalar: mean over valid anchors of [D(a,p) − D(a,n) + m]₊
    norm: Tensor  # scalar: mean over valid anchors of ‖a‖+‖p‖+‖n‖ (this type's feature-norm term)
    active: Tensor  # scalar, detached: fraction of valid triplets with a positive hinge
    valid_count: Tensor  # scalar, detached: number of anchors that had a negative
    neg_distance: Tensor | None = None  # scalar, detached: mean over valid anchors of D(a, n), n the mined negative
    # Per-anchor parts, for a feature-norm term over several triplet types that counts each embedding once:
    valid: Tensor | None = None  # (N,) float mask of anchors with a triplet
    anchor_norm: Tensor | None = None  # (N,) ‖a_i‖
    pos_norm: Tensor | None = None  # (N,) ‖p_i‖
    neg_norm: Tensor | None = None  # (N,) ‖n_i‖
    neg_index: Tensor | None = None  # (N,) row of the negative in its candidate pool
    neg_pool: str = ""  # "natural" (rows of the anchors) or "perturbed" (rows of this type's positives)

    @property
    def active_fraction(self) -> float:
        return float(self.active.item())

    @property
    def n_valid(self) -> int:
        return int(self.valid_count.item())


def _choose(name: str, valid: tuple[str, ...], what: str) -> str:
    if name not in valid:
        raise ValueError(f"unknown {what} {name!r}; valid values: {', '.join(valid)}")
    return name


class TripletLoss:
    """Angular triplet loss (Mao et al. 2019 as used by the paper's Eq. 2) with a pluggable miner.

    miner: a Miner object (default HardestNegativeMiner on ``distance``); core/registry.py make_miner builds the
    registered ones by name: "hardest", "random" (positive of anchor i is positive[i]), "batch_hard" (authors').
    negatives: "natural" (candidates = the anchors h(x)) | "perturbed" (candidates = the positives).
    distance: any object with `__call__(u, v)` row-wise and `pairwise(a, b)`; default AngularDistance().
    """

    def __init__(self, margin: float = 0.05, miner: Miner | None = None, negatives: str = "natural",
                 distance: AngularDistance | None = None) -> None:
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"triplet margin must be a finite number >= 0, got {margin}")
        if miner is not None and (isinstance(miner, str) or not callable(miner)):
            raise TypeError(f"TripletLoss(miner=...) takes a Miner object, got {miner!r}; build one by name with "
                            "core.registry.make_miner")
        self.margin = float(margin)
        self.negatives = _choose(negatives, NEGATIVES, "triplet negatives")
        self.distance = distance if distance is not None else AngularDistance()
        self.miner: Miner = miner if miner is not None else HardestNegativeMiner(self.distance)

    def __repr__(self) -> str:
        return (f"TripletLoss(margin={self.margin}, miner={type(self.miner).__name__}, "
                f"negatives={self.negatives!r}, distance={self.distance!r})")

    def __call__(self, anchor: Tensor, positive: Tensor, labels: Tensor,
                 generator: torch.Generator | None = None) -> TripletResult:
        if anchor.dim() != 2 or positive.shape != anchor.shape:
            raise ValueError(f"TripletLoss needs anchor and positive embeddings of equal shape (N, d), got "
                             f"{tuple(anchor.shape)} and {tuple(positive.shape)}")
        if labels.shape != (anchor.shape[0],):
            raise ValueError(f"TripletLoss labels must have shape (N,) = ({anchor.shape[0]},), "
                             f"got {tuple(labels.shape)}")
        if anchor.shape[0] == 0:
            raise ValueError("TripletLoss got an empty batch; drop empty batches before the loss")
        labels = labels.to(anchor.device)
        candidates = anchor if self.negatives == "natural" else positive
        mined = self.miner(anchor.detach(), positive.detach(), candidates.detach(), labels, generator)

        pos = positive[mined.positive_idx]
        neg = candidates[mined.negative_idx]
        d_neg = self.distance(anchor, neg)
        hinge = F.relu(self.distance(anchor, pos) - d_neg + self.margin)
        valid = mined.valid.to(hinge.dtype)
        count = valid.sum()
        denom = count.clamp_min(1.0)  # no valid anchor → loss is an exact, grad-connected 0
        a_norm = torch.linalg.vector_norm(anchor, dim=1)
        p_norm = torch.linalg.vector_norm(pos, dim=1)
        n_norm = torch.linalg.vector_norm(neg, dim=1)
        return TripletResult(
            loss=(hinge * valid).sum() / denom,
            norm=((a_norm + p_norm + n_norm) * valid).sum() / denom,
            active=(((hinge > 0).to(hinge.dtype) * valid).sum() / denom).detach(),
            valid_count=count.detach(),
            neg_distance=((d_neg * valid).sum() / denom).detach(),
            valid=valid, anchor_norm=a_norm, pos_norm=p_norm, neg_norm=n_norm,
            neg_index=mined.negative_idx, neg_pool=self.negatives,
        )


def set_feature_norm(results: dict[str, TripletResult]) -> Tensor:
    """N = mean over anchors of Σ_{t∈S} ‖h(x_t)‖₂, S = the distinct embeddings the anchor's triplets use.

    ``results`` maps a triplet type ("sa", "ia") to its result; all share the same anchors. S holds the anchor
    once, each type's positive (the types' positives are different perturbed embeddings) and each distinct
    negative: natural negatives are rows of the shared anchors, so two types that mined the same row count it
    once; perturbed negatives are rows of each type's own positives and never coincide across types. Anchors
    enter the mean when at least one type has a triplet for them (docs/architecture.md: λ3 weighs the anchor equally in
    ml_sa and ml_sa_ia).
    """
    parts = list(results.values())
    if not parts:
        raise ValueError("set_feature_norm needs at least one triplet result")
    valid_any = torch.stack([r.valid for r in parts]).amax(0)
    per_anchor = parts[0].anchor_norm * valid_any
    seen: list[tuple[str, Tensor, Tensor]] = []  # (pool key, negative index, valid) of earlier types
    for key, r in results.items():
        per_anchor = per_anchor + r.pos_norm * r.valid
        pool = "natural" if r.neg_pool == "natural" else f"perturbed:{key}"
        new = r.valid
        for other_pool, other_idx, other_valid in seen:
            if other_pool == pool:
                new = new * (1.0 - (other_idx == r.neg_index).to(new.dtype) * other_valid)
        per_anchor = per_anchor + r.neg_norm * new
        seen.append((pool, r.neg_index, r.valid))
    return per_anchor.sum() / valid_any.sum().clamp_min(1.0)


# --------------------------------------------------------------------------------------------- objective


@dataclass(frozen=True)
class ObjectiveWeights:
    """L = w_clean·CE(f(x)) + w_adv·CE(f(x_p)) + λ_sa·T_sa + λ_ia·T_ia + λ_norm·N."""

    w_clean: float
    w_adv: float
    lambda_sa: float
    lambda_ia: float
    lambda_norm: float

    def __post_init__(self) -> None:
        for name in ("w_clean", "w_adv", "lambda_sa", "lambda_ia", "lambda_norm"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise ValueError(f"objective weight {name} must be a finite number >= 0, got {value!r}")


# The weights themselves live in core/registry.py (the config resolves a variant from there too).
VARIANT_WEIGHTS: dict[str, ObjectiveWeights] = {name: ObjectiveWeights(**w) for name, w in _WEIGHTS.items()}

TERM_NAMES = ("loss", "ce_clean", "ce_adv", "triplet_sa", "triplet_ia", "norm", "active_sa", "active_ia",
              "neg_dist_sa", "neg_dist_ia")
# The diagnostics of a triplet type (share of active triplets, mean distance to the mined negative): meaningful only
# when that type is computed (its λ > 0); core/train.py leaves them out of the epoch record otherwise.
TRIPLET_DIAGNOSTICS = {"sa": ("active_sa", "neg_dist_sa"), "ia": ("active_ia", "neg_dist_ia")}


def _required(tensor: Tensor | None, name: str, weight: str, what: str) -> Tensor:
    if tensor is None:
        raise ValueError(f"{name} is None but {weight} > 0: {what} are required; pass them or set {weight}=0")
    return tensor


def objective_terms(*, logits_clean: Tensor | None, logits_adv: Tensor | None, labels: Tensor,
                    h_clean: Tensor | None, h_adv: Tensor | None, h_inv: Tensor | None,
                    weights: ObjectiveWeights, triplet: TripletLoss,
                    generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The objective without any host sync: (loss, {term name: detached scalar tensor}).

    Terms whose weight is 0 are not computed (their inputs may then be None) and are reported as 0. Besides the
    loss terms: active_sa/ia (share of valid triplets with a positive hinge) and neg_dist_sa/ia (mean D from the
    anchor to its mined negative: the hardest one with the default miner).
    N is the feature norm over the distinct embeddings of the computed triplets (`set_feature_norm`); it is
    reported even when λ_norm = 0.
    """
    zero = labels.new_zeros((), dtype=torch.float32)
    terms: dict[str, Tensor] = {name: zero for name in TERM_NAMES}
    total = zero
    if weights.w_clean > 0:
        logits = _required(logits_clean, "logits_clean", "w_clean", "clean logits")
        terms["ce_clean"] = F.cross_entropy(logits, labels)
        total = total + weights.w_clean * terms["ce_clean"]
    if weights.w_adv > 0:
        logits = _required(logits_adv, "logits_adv", "w_adv", "adversarial (FGSM) logits")
        terms["ce_adv"] = F.cross_entropy(logits, labels)
        total = total + weights.w_adv * terms["ce_adv"]

    norm = zero
    results: dict[str, TripletResult] = {}
    for key, lam, h_pos, pos_name, weight_name, what in (
        ("sa", weights.lambda_sa, h_adv, "h_adv", "lambda_sa", "sensitivity (FGSM) embeddings"),
        ("ia", weights.lambda_ia, h_inv, "h_inv", "lambda_ia", "invariance examples' embeddings"),
    ):
        if lam > 0:
            anchor = _required(h_clean, "h_clean", weight_name, "clean embeddings")
            result = triplet(anchor, _required(h_pos, pos_name, weight_name, what), labels, generator)
            terms[f"triplet_{key}"] = result.loss
            terms[f"active_{key}"] = result.active
            terms[f"neg_dist_{key}"] = result.neg_distance
            total = total + lam * result.loss
            results[key] = result
    if results:
        norm = set_feature_norm(results)
    terms["norm"] = norm
    if weights.lambda_norm > 0:
        total = total + weights.lambda_norm * norm
    terms["loss"] = total
    return total, {name: value.detach() for name, value in terms.items()}


def terms_to_floats(terms: dict[str, Tensor]) -> dict[str, float]:
    """Detached scalar tensors → floats with a single device→host transfer."""
    if not terms:
        return {}
    names = list(terms)
    device = next(iter(terms.values())).device
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    values = torch.stack([terms[n].to(device=device, dtype=dtype) for n in names]).tolist()
    return dict(zip(names, values, strict=True))


def objective(*, logits_clean: Tensor | None, logits_adv: Tensor | None, labels: Tensor,
              h_clean: Tensor | None, h_adv: Tensor | None, h_inv: Tensor | None,
              weights: ObjectiveWeights, triplet: TripletLoss,
              generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
    """Training loss and its logged parts as floats (keys: TERM_NAMES). One host sync, for the floats;
    use `objective_terms` + `terms_to_floats` to log less often than every batch.
    """
    loss, terms = objective_terms(logits_clean=logits_clean, logits_adv=logits_adv, labels=labels,
                                  h_clean=h_clean, h_adv=h_adv, h_inv=h_inv, weights=weights,
                                  triplet=triplet, generator=generator)
    return loss, terms_to_floats(terms)
