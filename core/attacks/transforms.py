"""Rotation-translation transforms of the invariance attack, with an exact inverse.

A transform is a triple ``(tx, ty, degrees)``: rotate about the image centre by ``degrees`` (positive =
counter-clockwise as displayed, rows growing downwards), then shift by ``tx`` pixels to the right and ``ty``
pixels down. Images are resampled once, bilinearly, in float, with zeros outside the frame.

Everything is expressed with 3x3 affine matrices in pixel coordinates ``(column, row, 1)``; the forward matrix
maps a source pixel to where it lands. Warping needs, for every output pixel, the source location, so
``apply_transforms`` samples through the inverse matrix and ``invert_transforms`` through the forward one —
the composed map is inverted exactly instead of undoing rotation and shift separately.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "GRID",
    "GRID_ROTATIONS",
    "GRID_TRANSLATIONS",
    "apply_transforms",
    "as_transform_tensor",
    "forward_matrices",
    "inverse_matrices",
    "invert_transforms",
    "make_grid",
    "sampling_grid",
    "transform_all",
    "warp",
    "warp_all",
    "warp_all_transform_major",
]

Transform = tuple[float, float, float]

GRID_TRANSLATIONS: tuple[float, ...] = (-3.0, -1.5, 0.0, 1.5, 3.0)
GRID_ROTATIONS: tuple[float, ...] = tuple(float(r) for r in range(-30, 31, 2))


def make_grid(translations: Sequence[float], rotations: Sequence[float]) -> tuple[Transform, ...]:
    """All ``(tx, ty, degrees)`` combinations, in the reference's order (tx slowest, rotation fastest)."""
    if not translations or not rotations:
        raise ValueError("make_grid needs at least one translation and one rotation (pass e.g. [0.0]).")
    combos = itertools.product(translations, translations, rotations)
    return tuple((float(tx), float(ty), float(r)) for tx, ty, r in combos)


#: The default grid of Tramèr et al.: tx, ty in {-3, -1.5, 0, 1.5, 3} px x rotations -30..30 step 2 = 775.
GRID: tuple[Transform, ...] = make_grid(GRID_TRANSLATIONS, GRID_ROTATIONS)


def as_transform_tensor(transforms: Sequence[Sequence[float]] | Tensor) -> Tensor:
    """Transforms as a float64 CPU tensor of shape (T, 3); raises on any other shape."""
    t = torch.as_tensor(transforms, dtype=torch.float64).detach().cpu()
    if t.ndim != 2 or t.shape[1] != 3 or t.shape[0] == 0:
        raise ValueError(
            f"transforms must have shape (T, 3) of (tx, ty, degrees) with T >= 1, got {tuple(t.shape)}."
        )
    if not torch.isfinite(t).all():
        raise ValueError("transforms contain NaN or infinite values; use finite (tx, ty, degrees).")
    return t


def forward_matrices(transforms: Sequence[Sequence[float]] | Tensor, size: int = 28) -> Tensor:
    """(T, 3, 3) float64 matrices mapping a source pixel (col, row, 1) to its destination."""
    t = as_transform_tensor(transforms)
    theta = torch.deg2rad(t[:, 2])
    cos, sin = torch.cos(theta), torch.sin(theta)
    c = (size - 1) / 2.0  # rotate about the centre of the pixel grid
    m = torch.zeros(t.shape[0], 3, 3, dtype=torch.float64)
    # With rows pointing down, a counter-clockwise turn on screen is [[cos, sin], [-sin, cos]].
    m[:, 0, 0], m[:, 0, 1] = cos, sin
    m[:, 1, 0], m[:, 1, 1] = -sin, cos
    m[:, 0, 2] = c - cos * c - sin * c + t[:, 0]
    m[:, 1, 2] = c + sin * c - cos * c + t[:, 1]
    m[:, 2, 2] = 1.0
    return m


def inverse_matrices(transforms: Sequence[Sequence[float]] | Tensor, size: int = 28) -> Tensor:
    """(T, 3, 3) float64 exact inverses of :func:`forward_matrices` (a rigid map: R^T and -R^T t)."""
    m = forward_matrices(transforms, size)
    inv = torch.zeros_like(m)
    rt = m[:, :2, :2].transpose(1, 2)
    inv[:, :2, :2] = rt
    inv[:, :2, 2] = -(rt @ m[:, :2, 2:]).squeeze(-1)
    inv[:, 2, 2] = 1.0
    return inv


def sampling_grid(src_from_dst: Tensor, size: int, device: torch.device | str, dtype: torch.dtype) -> Tensor:
    """(T, 3, 3) pixel-space matrices -> (T, size, size, 2) grid for ``grid_sample(align_corners=True)``."""
    # Fold the pixel -> normalised [-1, 1] conversion into the matrix, in float64, before rounding to dtype.
    s = 2.0 / (size - 1)
    to_norm = torch.tensor([[s, 0.0, -1.0], [0.0, s, -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    theta = (to_norm @ src_from_dst.to(torch.float64).cpu() @ torch.linalg.inv(to_norm))[:, :2, :]
    theta = theta.to(device=device, dtype=dtype)
    return F.affine_grid(theta, [theta.shape[0], 1, size, size], align_corners=True)


def warp(images: Tensor, src_from_dst: Tensor) -> Tensor:
    """Bilinear resampling: output pixel p of image i takes its value at ``src_from_dst[i] @ p``.

    ``images`` is (M, 1, H, H) float, ``src_from_dst`` (M, 3, 3); runs on the images' device.
    """
    if images.ndim != 4 or images.shape[0] != src_from_dst.shape[0] or images.shape[2] != images.shape[3]:
        raise ValueError(
            f"warp needs square images (M, C, H, H) and one matrix per image, got {tuple(images.shape)} "
            f"and {tuple(src_from_dst.shape)}."
        )
    grid = sampling_grid(src_from_dst, images.shape[-1], images.device, images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def warp_all(images: Tensor, grid: Tensor) -> Tensor:
    """Every grid of ``grid`` (T, H, H, 2) applied to every image (B, 1, H, H) -> (B, T, H, H)."""
    return warp_all_transform_major(images, grid).transpose(0, 1).contiguous()


def warp_all_transform_major(images: Tensor, grid: Tensor) -> Tensor:
    """Like :func:`warp_all` but laid out (T, B, H, H), as ``grid_sample`` produces it (no transposing copy).

    The images travel as channels of one input broadcast over the T transforms, so the bilinear weights are
    computed once per transform instead of once per (image, transform): about 5x faster on CPU.
    """
    b, t = images.shape[0], grid.shape[0]
    stacked = images.reshape(1, b, *images.shape[2:]).expand(t, b, *images.shape[2:])
    return F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _check_images(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 1 or not images.is_floating_point():
        raise ValueError(
            f"images must be float (N, 1, H, W) in [0, 1], got {images.dtype} {tuple(images.shape)}; "
            "convert uint8 with images.float() / 255."
        )


def apply_transforms(images: Tensor, transforms: Tensor | Sequence[Sequence[float]]) -> Tensor:
    """Transform image i by transform i: (N, 1, H, W) float -> same shape, clipped to [0, 1]."""
    return _warp_each(images, transforms, inverse_matrices)


def invert_transforms(images: Tensor, transforms: Tensor | Sequence[Sequence[float]]) -> Tensor:
    """Undo transform i on image i exactly (one resampling through the composed map), clipped to [0, 1]."""
    return _warp_each(images, transforms, forward_matrices)


def _warp_each(images: Tensor, transforms: Tensor | Sequence[Sequence[float]],
               matrices: Callable[[Tensor, int], Tensor]) -> Tensor:
    """Image i resampled through ``matrices(transforms, size)[i]`` (inverse: apply; forward: undo)."""
    _check_images(images)
    t = as_transform_tensor(transforms)
    if t.shape[0] != images.shape[0]:
        raise ValueError(f"need one transform per image: got {t.shape[0]} for {images.shape[0]} images.")
    return warp(images, matrices(t, images.shape[-1])).clamp_(0.0, 1.0)


def transform_all(images: Tensor, transforms: Tensor | Sequence[Sequence[float]]) -> Tensor:
    """Every transform applied to every image: (B, 1, H, H) -> (B, T, H, H), clipped to [0, 1]."""
    _check_images(images)
    grid = sampling_grid(inverse_matrices(transforms, images.shape[-1]), images.shape[-1], images.device,
                         images.dtype)
    return warp_all(images, grid).clamp_(0.0, 1.0)
