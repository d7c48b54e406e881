"""Nearest-neighbour search over (transform, pool image) pairs for the invariance attack.

For a batch of queries and one class c of the pool, find per query the pair (T, n) minimising ‖T(x) − n‖₂ over
every transform T of the grid and every pool image n of class c.

* ``exact``: every transformed query against every pool image of the class, as GEMMs
  ‖a‖² + ‖b‖² − 2a·b over pool blocks (memory bounded by ``block_elems``).
* ``fast``: a shortlist, then the exact search restricted to it. The shortlist ranks pool images by the
  min over a coarse sub-grid of transforms of ‖P(a − n)‖² + (‖a⊥‖ − ‖n⊥‖)², a = T(x), P a PCA projection and
  ⊥ what it misses — a lower bound of ‖a − n‖² — as blocked GEMMs on (k+3)-dim augmented vectors, the min over
  transforms fused per block. The shortlist is then re-ranked exactly over the full grid.

The transformed queries are kept transform-major, (T, B, D), as ``grid_sample`` produces them, and are not
clipped: bilinear weights are convex, so warped [0, 1] images stay in [0, 1] up to rounding.

Both modes end with a refinement: the best few (transform, pool image) candidates are re-scored by the direct
sum of squared differences, so float32 cancellation in the GEMM form cannot flip a near tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core import registry
from core.attacks.transforms import (
    as_transform_tensor,
    inverse_matrices,
    make_grid,
    sampling_grid,
    warp_all_transform_major,
)

__all__ = ["MODES", "FastParams", "PoolIndex", "SearchResult"]

MODES = registry.INVARIANCE_MODES


@dataclass(frozen=True)
class FastParams:
    """Knobs of the ``fast`` mode; part of the cache key."""

    # Measured against exact (the rank of the exact neighbour under this bound, per (query, allowed class)):
    # Fashion-MNIST, 400 test queries = 845 searches vs the 60k pool: < 64 in 99.6 %, < 128 in 99.9 %;
    # mnist-sample, 1000 queries = 2100 searches vs its 4k pool: < 32 in 99.9 %, < 64 in 100 %. Cheaper coarse
    # grids (rotations {-20, 0, 20}, or no residual term) did as well on Fashion-MNIST but lost 1-2 % of MNIST
    # digits at 64, whose thin strokes need the finer rotations.
    components: int = 64  # PCA dimensions of the lower bound
    coarse_translations: tuple[float, ...] = (-3.0, -1.5, 0.0, 1.5, 3.0)
    coarse_rotations: tuple[float, ...] = tuple(float(r) for r in range(-30, 31, 10))
    residual: bool = True  # add (‖a⊥‖ − ‖n⊥‖)², the norms of what the projection misses, to the bound
    shortlist: int = 64  # pool images per (query, class) re-ranked exactly over the full grid
    pca_fit_max: int = 12000  # pool images used to fit the PCA basis (evenly spaced, deterministic)

    def describe(self) -> dict:
        return {
            "components": self.components,
            "coarse_translations": list(self.coarse_translations),
            "coarse_rotations": list(self.coarse_rotations),
            "residual": self.residual,
            "shortlist": self.shortlist,
            "pca_fit_max": self.pca_fit_max,
        }


@dataclass
class SearchResult:
    """Best pair per query: global pool index, transform index in the grid, and the L2 distance."""

    pool_index: Tensor  # (B,) int64
    transform_index: Tensor  # (B,) int64
    distance: Tensor  # (B,) float32


@dataclass
class _Queries:
    full_tb: Tensor  # (T, B, D) every grid transform of every query, transform-major
    norms: Tensor  # (B, T) squared norms of the transformed queries
    coarse: Tensor | None  # (B*Tc, k+3) augmented rows of the coarse transforms, query-major (fast mode)

    @property
    def full(self) -> Tensor:
        """(B, T, D) view of ``full_tb`` (strided, no copy)."""
        return self.full_tb.transpose(0, 1)


def _flat_transforms(images: Tensor, grid: Tensor) -> Tensor:
    """(B, 1, H, H) float -> (T, B, H*H): the images under every transform of a precomputed sampling grid."""
    out = warp_all_transform_major(images, grid)
    return out.reshape(out.shape[0], out.shape[1], -1)


class PoolIndex:
    """The pool sorted by class on one device, with what each mode needs precomputed once."""

    def __init__(
        self,
        pool_images: Tensor,
        pool_labels: Tensor,
        *,
        mode: str = "exact",
        grid: Tensor,
        device: torch.device,
        fast: FastParams | None = None,
        block_elems: int = 1 << 24,
        refine: int = 8,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown invariance search mode {mode!r}; use one of {MODES}.")
        self.mode = mode
        self.device = device
        self.grid = as_transform_tensor(grid)
        self.block_elems = int(block_elems)
        self.refine = int(refine)
        self.fast = fast or FastParams()

        labels = pool_labels.to(device=device, dtype=torch.int64)
        # Stable sort keeps the original order inside each class, so ties resolve to the lowest pool index.
        order = torch.sort(labels, stable=True).indices
        self.order = order  # sorted position -> original pool index
        flat = pool_images.to(device).reshape(pool_images.shape[0], -1)[order]
        self.flat = flat.float() / 255.0 if flat.dtype == torch.uint8 else flat.float()
        self.sq = (self.flat * self.flat).sum(1)
        counts = torch.bincount(labels, minlength=10).cpu().tolist()
        starts = [0]
        for n in counts:
            starts.append(starts[-1] + n)
        self.slices = {c: (starts[c], starts[c + 1]) for c in range(len(counts))}
        # original pool index -> sorted position, to drop "the query itself" from its class block
        self.position = torch.empty_like(order)
        self.position[order] = torch.arange(order.numel(), device=device)
        self.size = int(pool_images.shape[-1])
        self.sampler = self._sampler(self.grid)

        if mode == "fast":
            self._fit_pca()

    # ---- fast-mode precomputation -------------------------------------------------------------------------
    def _fit_pca(self) -> None:
        p = self.fast
        n = self.flat.shape[0]
        k = min(p.components, self.flat.shape[1])
        step = max(1, n // max(1, p.pca_fit_max))
        sample = self.flat[::step].double()
        mean = sample.mean(0)
        centred = sample - mean
        cov = centred.T @ centred / max(1, centred.shape[0] - 1)
        self.basis = _top_eigenvectors(cov, k).float().contiguous()  # (D, k)
        self.mean = mean.float()
        self.mean_proj = (self.mean @ self.basis).unsqueeze(0)  # (1, k)
        self.mean_sq = float((self.mean * self.mean).sum())
        self.basis_mean = torch.cat([self.basis, self.mean.unsqueeze(1)], 1).contiguous()  # (D, k+1)
        proj, resid = self._project(self.flat, self.sq)
        # Pool rows [−2·Pn, −2·r_n, 1, ‖Pn‖² + r_n²] against query rows [Pa, r_a, ‖Pa‖² + r_a², 1]: one GEMM
        # gives ‖P(a − n)‖² + (r_a − r_n)² (P centred, r the residual norm, 0 without the residual term).
        ones = torch.ones_like(resid)
        sq = (proj * proj).sum(1, keepdim=True) + resid * resid
        self.pool_aug_t = torch.cat([-2.0 * proj, -2.0 * resid, ones, sq], 1).T.contiguous()
        coarse = as_transform_tensor(make_grid(p.coarse_translations, p.coarse_rotations))
        # Coarse transforms that are also grid transforms are sliced out of the full warp instead of re-warped.
        match = (coarse.unsqueeze(1) - self.grid.unsqueeze(0)).abs().amax(-1) < 1e-9  # (Tc, T)
        if bool(match.any(1).all()):
            self.coarse_ids: Tensor | None = match.float().argmax(1).to(self.device)
        else:
            self.coarse_ids = None
            self.coarse_sampler = self._sampler(coarse)

    def _project(self, flat: Tensor, sq: Tensor) -> tuple[Tensor, Tensor]:
        """(M, D) rows and their squared norms -> centred PCA coordinates (M, k) and residual norms (M, 1)."""
        both = flat @ self.basis_mean  # (M, k+1): coordinates and the dot product with the mean
        proj = both[:, :-1] - self.mean_proj
        if not self.fast.residual:
            return proj, torch.zeros_like(proj[:, :1])
        centred_sq = sq.unsqueeze(1) - 2.0 * both[:, -1:] + self.mean_sq
        return proj, (centred_sq - (proj * proj).sum(1, keepdim=True)).clamp_min(0).sqrt()

    def _sampler(self, transforms: Tensor) -> Tensor:
        return sampling_grid(inverse_matrices(transforms, self.size), self.size, self.device, torch.float32)

    # ---- search ------------------------------------------------------------------------------------------
    def prepare(self, images: Tensor) -> _Queries:
        """Transform a batch of float queries (B, 1, H, W) once, for use against several classes."""
        images = images.to(device=self.device, dtype=torch.float32)
        full_tb = _flat_transforms(images, self.sampler)  # (T, B, D)
        norms = (full_tb * full_tb).sum(-1).T  # (B, T)
        if self.mode != "fast":
            return _Queries(full_tb, norms, None)
        if self.coarse_ids is not None:
            coarse_tb = full_tb.index_select(0, self.coarse_ids)
            coarse_sq = norms.T.index_select(0, self.coarse_ids)
        else:
            coarse_tb = _flat_transforms(images, self.coarse_sampler)
            coarse_sq = (coarse_tb * coarse_tb).sum(-1)
        tc, b, d = coarse_tb.shape
        proj, resid = self._project(coarse_tb.reshape(tc * b, d), coarse_sq.reshape(tc * b))
        sq = (proj * proj).sum(1, keepdim=True) + resid * resid
        coarse = torch.cat([proj, resid, sq, torch.ones_like(sq)], 1).view(tc, b, -1).transpose(0, 1)  # (B, Tc, ·)
        return _Queries(full_tb, norms, coarse.reshape(b * tc, -1))

    def images_at(self, pool_index: Tensor) -> Tensor:
        """Pool images (B, 1, H, H) float by original pool index."""
        return self.flat[self.position[pool_index]].view(-1, 1, self.size, self.size)

    def class_size(self, c: int) -> int:
        lo, hi = self.slices.get(c, (0, 0))
        return hi - lo

    def search(self, queries: _Queries, c: int, exclude: Tensor | None = None) -> SearchResult:
        """Best pair in class ``c`` for each prepared query; ``exclude`` (B,) = pool index to skip, or −1."""
        lo, hi = self.slices.get(c, (0, 0))
        if hi - lo == 0:
            raise ValueError(f"the pool has no image of class {c}; the attack needs pool images of every target.")
        b = queries.full_tb.shape[1]
        excl_local = self._local_exclusions(exclude, lo, hi, b)
        if self.mode == "exact":
            cand_val, cand_idx = self._exact_per_transform(queries.full_tb, lo, hi, excl_local)
        else:
            cand_val, cand_idx = self._fast_per_transform(queries, lo, hi, excl_local)
        return self._refine(queries, cand_val, cand_idx, lo)

    def _local_exclusions(self, exclude: Tensor | None, lo: int, hi: int, b: int) -> Tensor | None:
        if exclude is None:
            return None
        excl = exclude.to(device=self.device, dtype=torch.int64)
        if excl.shape != (b,):
            raise ValueError(f"exclude_self needs one entry per query ({b}), got shape {tuple(excl.shape)}.")
        n_pool = self.position.numel()
        if bool(((excl < -1) | (excl >= n_pool)).any()):
            raise ValueError(f"exclude_self entries must be -1 or a pool index in [0, {n_pool}).")
        pos = self.position[excl.clamp_min(0)] - lo
        inside = (excl >= 0) & (pos >= 0) & (pos < hi - lo)
        local = torch.where(inside, pos, torch.full_like(pos, -1))
        return local if bool(inside.any()) else None

    def _exact_per_transform(
        self, full_tb: Tensor, lo: int, hi: int, excl_local: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Per (query, transform): min over the class of ‖b‖² − 2a·b, and its local pool index."""
        t, b, d = full_tb.shape
        rows = full_tb.reshape(t * b, d)  # transform-major rows
        best_val = torch.full((t * b,), float("inf"), device=self.device)
        best_idx = torch.zeros(t * b, dtype=torch.int64, device=self.device)
        block = max(64, self.block_elems // max(1, b * t))
        for s in range(lo, hi, block):
            e = min(hi, s + block)
            scores = torch.addmm(self.sq[s:e].unsqueeze(0), rows, self.flat[s:e].T, alpha=-2.0)
            if excl_local is not None:
                _mask_columns(scores.view(t, b, e - s).transpose(0, 1), excl_local - (s - lo))
            val, idx = scores.min(1)
            better = val < best_val
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx + (s - lo), best_idx)
        return best_val.view(t, b).T, best_idx.view(t, b).T

    def _fast_per_transform(
        self, q: _Queries, lo: int, hi: int, excl_local: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Shortlist by the coarse lower bound, then the exact per-transform minimum over the shortlist."""
        assert q.coarse is not None
        bound = self._coarse_bound(q.coarse, q.full_tb.shape[1], lo, hi)  # (B, Nc)
        if excl_local is not None:
            _mask_columns(bound.unsqueeze(1), excl_local)
        k = min(self.fast.shortlist, hi - lo)
        short = bound.topk(k, dim=1, largest=False, sorted=False).indices  # (B, K) local
        short = short.sort(dim=1).values  # ascending pool order: ties go to the lowest index
        cand = self.flat[lo:hi][short]  # (B, K, D)
        scores = torch.baddbmm(self.sq[lo:hi][short].unsqueeze(1), q.full, cand.transpose(1, 2), alpha=-2.0)
        if excl_local is not None:
            hit = short == excl_local.unsqueeze(1)  # (B, K)
            scores = scores.masked_fill(hit.unsqueeze(1), float("inf"))
        val, pos = scores.min(2)  # (B, T)
        return val, short.gather(1, pos)

    def _coarse_bound(self, coarse: Tensor, b: int, lo: int, hi: int) -> Tensor:
        """(B, Nc): min over coarse transforms of ‖P(T(x) − n)‖², in blocks small enough for the CPU cache."""
        tc = coarse.shape[0] // b
        # On CPU, ~1M-element score blocks stay in L2, which makes the fused min over transforms ~1.5x faster.
        target = 1 << 20 if self.device.type == "cpu" else self.block_elems
        qb = max(1, min(b, 16 if self.device.type == "cpu" else b))
        cols = max(64, target // (qb * tc))
        bound = torch.empty(b, hi - lo, device=self.device)
        for s in range(lo, hi, cols):
            e = min(hi, s + cols)
            pool = self.pool_aug_t[:, s:e]
            for r in range(0, b, qb):
                r2 = min(b, r + qb)
                scores = coarse[r * tc : r2 * tc] @ pool
                torch.amin(scores.view(r2 - r, tc, e - s), dim=1, out=bound[r:r2, s - lo : e - lo])
        return bound

    def _refine(self, q: _Queries, cand_val: Tensor, cand_idx: Tensor, lo: int) -> SearchResult:
        """Re-score the best few transforms by the direct squared difference and keep the smallest."""
        full = q.full
        b, t, d = full.shape
        r = min(self.refine, t)
        # Add ‖a‖² so the per-transform scores are comparable across transforms.
        total = cand_val + q.norms
        top_t = total.topk(r, dim=1, largest=False, sorted=False).indices.sort(dim=1).values  # (B, r)
        top_n = cand_idx.gather(1, top_t)  # (B, r) local pool index
        qa = full.gather(1, top_t.unsqueeze(-1).expand(b, r, d))
        diff = qa - self.flat[lo + top_n]
        dist2 = (diff * diff).sum(-1)
        # A transform whose every candidate was excluded keeps an infinite score.
        dist2 = dist2.masked_fill(~torch.isfinite(cand_val.gather(1, top_t)), float("inf"))
        best = dist2.argmin(1, keepdim=True)
        local = top_n.gather(1, best).squeeze(1)
        return SearchResult(
            pool_index=self.order[lo + local],
            transform_index=top_t.gather(1, best).squeeze(1),
            distance=dist2.gather(1, best).squeeze(1).sqrt(),
        )


def _mask_columns(scores: Tensor, local: Tensor) -> None:
    """Set scores[b, :, local[b]] = inf in place where 0 <= local[b] < width (the query's own image)."""
    width = scores.shape[-1]
    rows = ((local >= 0) & (local < width)).nonzero().squeeze(1)
    if rows.numel():
        scores[rows, :, local[rows]] = float("inf")


def _top_eigenvectors(cov: Tensor, k: int, iterations: int = 12) -> Tensor:
    """Orthonormal (D, k) basis of the top-k eigenvectors of a PSD matrix, by subspace iteration.

    A full ``eigh`` of the 784x784 covariance takes 10-20 s on a busy 2-core CPU (MKL); this takes tens of
    milliseconds, is deterministic, and any orthonormal basis keeps the shortlist bound a valid lower bound —
    accuracy of the eigenvectors only affects how well the shortlist ranks.
    """
    d = cov.shape[0]
    m = min(d, k + 16)
    start_cols = torch.argsort(cov.diagonal(), descending=True, stable=True)[:m]
    v = torch.linalg.qr(cov[:, start_cols]).Q
    for _ in range(iterations):
        v = torch.linalg.qr(cov @ v).Q
    # Rayleigh-Ritz: rotate the subspace onto eigenvectors, largest first.
    vals, vecs = torch.linalg.eigh(v.T @ cov @ v)
    return (v @ vecs.flip(1))[:, :k]
