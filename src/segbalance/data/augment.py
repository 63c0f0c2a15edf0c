"""Patch augmentations with MONAI's semantics, computed per patch in numpy/torch.

Each random transform follows the MONAI transform of the same name (same parameter
draws and formulas; tests compare with MONAI): ``RandFlip`` per axis, ``RandRotate90``,
``RandAffine`` (rotation + per-axis scale), ``RandScaleIntensity`` (x * (1 + f)),
``RandShiftIntensity`` (x + o), ``RandAdjustContrast`` (gamma on the min-max range),
``RandGaussianNoise`` (std drawn in [0, std]). They are re-implemented rather than
called because a MONAI transform chain costs more than the network step on small patches
(benchmarks/loader.py). The affine is applied *while cropping*: the patch grid is mapped
into the volume and sampled there (trilinear for images, nearest for label and component
map), so rotated patches take real voxels instead of zero-filled corners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

PROBABILITY_FIELDS = (
    "flip_prob",
    "rot90_prob",
    "affine_prob",
    "scale_intensity_prob",
    "shift_intensity_prob",
    "gamma_prob",
    "noise_prob",
)


@dataclass(frozen=True)
class AugmentSettings:
    """Augmentation probabilities and ranges (defaults close to nnU-Net's).

    Attributes:
        flip_axes: spatial axes that may be mirrored (hippocampus: ``(0,)``, see docs).
        flip_prob: probability of mirroring, per axis.
        rot90_planes: planes ``(a, b)`` for 90-degree rotations; None = every plane whose
            two patch extents are equal; ``()`` disables.
        rot90_prob: probability of a rotation by k*90 degrees, k in {1, 2, 3}.
        affine_prob: probability of a small affine (rotation + scaling).
        rotate_range: maximal rotation angle per axis, radians.
        scale_range: per-axis scale factor drawn in ``[1 - r, 1 + r]``.
        scale_intensity_prob / scale_intensity: ``x * (1 + f)``, f in ``[-r, r]``.
        shift_intensity_prob / shift_intensity: ``x + o``, o in ``[-r, r]``.
        gamma_prob / gamma_range: contrast gamma on the patch's min-max range.
        noise_prob / noise_std: additive Gaussian noise, std drawn in ``[0, noise_std]``.
    """

    flip_axes: tuple[int, ...] = (0, 1, 2)
    flip_prob: float = 0.5
    rot90_planes: tuple[tuple[int, int], ...] | None = None
    rot90_prob: float = 0.5
    affine_prob: float = 0.2
    rotate_range: float = math.radians(15.0)
    scale_range: float = 0.1
    scale_intensity_prob: float = 0.15
    scale_intensity: float = 0.1
    shift_intensity_prob: float = 0.15
    shift_intensity: float = 0.1
    gamma_prob: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    noise_prob: float = 0.1
    noise_std: float = 0.1

    def __post_init__(self) -> None:
        for name in PROBABILITY_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1] but got {value}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ValueError(f"flip_axes: expected axes among 0, 1, 2 but got {self.flip_axes}")
        if not 0 < self.gamma_range[0] <= self.gamma_range[1]:
            raise ValueError(f"gamma_range: expected 0 < low <= high but got {self.gamma_range}")
        if not 0 <= self.scale_range < 1:
            raise ValueError(f"scale_range: expected a value in [0, 1) but got {self.scale_range}")

    @classmethod
    def off(cls) -> AugmentSettings:
        """No augmentation at all."""
        return cls(**dict.fromkeys(PROBABILITY_FIELDS, 0.0))

    def with_(self, **changes) -> AugmentSettings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def planes(self, patch: tuple[int, int, int]) -> list[tuple[int, int]]:
        """Rotation planes for this patch size (checked to keep the patch shape)."""
        if self.rot90_planes is None:
            return [(a, b) for a, b in ((0, 1), (0, 2), (1, 2)) if patch[a] == patch[b]]
        for a, b in self.rot90_planes:
            if {a, b} - {0, 1, 2} or a == b or patch[a] != patch[b]:
                raise ValueError(
                    f"rot90_planes: plane ({a}, {b}) needs two different axes with equal patch "
                    f"extents but the patch is {tuple(patch)}"
                )
        return [tuple(p) for p in self.rot90_planes]  # type: ignore[misc]


@dataclass
class SpatialDraw:
    """Random spatial parameters of one patch."""

    matrix: np.ndarray | None  # (3, 3) patch-offset -> volume-offset map, or None
    flips: tuple[int, ...]
    rot90: tuple[int, tuple[int, int]] | None  # (k, plane)


def draw_spatial(
    rng: np.random.Generator, settings: AugmentSettings, planes: list[tuple[int, int]]
) -> SpatialDraw:
    """Draw the spatial augmentation of one patch (fixed draw order for determinism)."""
    matrix = None
    if rng.random() < settings.affine_prob:
        angles = rng.uniform(-settings.rotate_range, settings.rotate_range, size=3)
        scales = 1.0 + rng.uniform(-settings.scale_range, settings.scale_range, size=3)
        matrix = affine_matrix(angles, scales)
    flips = tuple(axis for axis in settings.flip_axes if rng.random() < settings.flip_prob)
    rot = None
    if planes and rng.random() < settings.rot90_prob:
        rot = (int(rng.integers(1, 4)), planes[int(rng.integers(len(planes)))])
    return SpatialDraw(matrix, flips, rot)


def affine_matrix(angles: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Map from patch offsets to volume offsets: rotation ``R`` times ``diag(1/scale)``.

    ``angles[i]`` rotates in the plane orthogonal to axis ``i``; a scale > 1 magnifies.
    """
    rot = np.eye(3)
    for axis, angle in enumerate(angles):
        a, b = [i for i in range(3) if i != axis]
        r = np.eye(3)
        c, s = math.cos(angle), math.sin(angle)
        r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
        rot = rot @ r
    return rot @ np.diag(1.0 / np.asarray(scales, dtype=np.float64))


def crop_with_padding(
    array: np.ndarray, start: tuple[int, ...], size: tuple[int, ...], fill: float = 0
) -> np.ndarray:
    """Copy of ``array[..., start:start+size]`` over the last 3 axes, padding outside with ``fill``."""
    spatial = array.shape[-3:]
    src, dst = [], []
    inside = True
    for st, sz, n in zip(start, size, spatial, strict=True):
        a, b = max(st, 0), min(st + sz, n)
        if b <= a:
            return np.full((*array.shape[:-3], *size), fill, dtype=array.dtype)
        inside &= a == st and b == st + sz
        src.append(slice(a, b))
        dst.append(slice(a - st, b - st))
    if inside:
        return np.array(array[(..., *src)])
    out = np.full((*array.shape[:-3], *size), fill, dtype=array.dtype)
    out[(..., *dst)] = array[(..., *src)]
    return out


def sample_affine(
    arrays: tuple[np.ndarray, ...],
    interpolate: tuple[bool, ...],
    centre: np.ndarray,
    patch: tuple[int, int, int],
    matrix: np.ndarray,
) -> list[np.ndarray]:
    """Sample a patch whose voxel ``p`` takes the volume at ``centre + M (p - (P-1)/2)``.

    Args:
        arrays: volumes ``(*S)`` or ``(C, *S)`` sharing the spatial grid.
        interpolate: per array, trilinear (True) or nearest (False; exact for integers).
        centre: volume coordinates (voxel units) of the patch centre.
        matrix: ``(3, 3)`` map from :func:`affine_matrix`.

    Returns:
        one patch per array, dtype kept, zeros outside the volume.
    """
    coords = _patch_coordinates(patch, matrix, centre)
    out = []
    linear_arrays = [a for a, lin in zip(arrays, interpolate, strict=True) if lin]
    sampled_linear = iter(
        _trilinear(linear_arrays, coords, patch, matrix, centre) if linear_arrays else []
    )
    nearest_index = None
    for array, linear in zip(arrays, interpolate, strict=True):
        if linear:
            out.append(next(sampled_linear))
            continue
        if nearest_index is None:
            nearest_index = _nearest_index(coords, array.shape[-3:])
        index, inside = nearest_index
        # gather: exact for any integer dtype (no float round trip of label or component ids)
        values = np.asarray(array)[(..., *index)]
        values[..., ~inside] = 0
        out.append(values)
    return out


def _patch_coordinates(
    patch: tuple[int, int, int], matrix: np.ndarray, centre: np.ndarray
) -> list[np.ndarray]:
    """Volume coordinate along each axis of every patch voxel, three float32 ``(*P)`` arrays.

    Built from outer sums of the three 1-D offset vectors (the patch is a grid), cheaper
    than a ``(*P, 3) @ (3, 3)`` product.
    """
    axes = [np.arange(p, dtype=np.float32) - np.float32((p - 1) / 2.0) for p in patch]
    shaped = [axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]]
    m = matrix.astype(np.float32)
    return [
        m[i, 0] * shaped[0] + m[i, 1] * shaped[1] + (m[i, 2] * shaped[2] + np.float32(centre[i]))
        for i in range(3)
    ]


def _nearest_index(
    coords: list[np.ndarray], shape: tuple[int, ...]
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Rounded (half to even, as grid_sample 'nearest') indices, clamped, and the inside mask."""
    index, inside = [], None
    for coord, n in zip(coords, shape, strict=True):
        rounded = np.rint(coord).astype(np.intp)
        ok = (rounded >= 0) & (rounded < n)
        inside = ok if inside is None else inside & ok
        index.append(np.clip(rounded, 0, n - 1, out=rounded))
    return tuple(index), inside  # type: ignore[return-value]


def _trilinear(
    arrays: list[np.ndarray],
    coords: list[np.ndarray],
    patch: tuple[int, int, int],
    matrix: np.ndarray,
    centre: np.ndarray,
) -> list[np.ndarray]:
    """Trilinear sampling (zeros outside) of each array at ``coords``, one grid_sample call."""
    import torch
    import torch.nn.functional as F

    # the map is linear: the patch corners bound the region to read from the memory map
    corners = np.array(np.meshgrid(*[[0, p - 1] for p in patch], indexing="ij")).reshape(3, -1).T
    corner_pts = (corners - (np.asarray(patch) - 1) / 2.0) @ matrix.T + centre
    lo = np.floor(corner_pts.min(axis=0)).astype(np.int64) - 1
    hi = np.ceil(corner_pts.max(axis=0)).astype(np.int64) + 2
    region = tuple(int(h - low) for h, low in zip(hi, lo, strict=True))
    crops = [crop_with_padding(a, tuple(int(v) for v in lo), region) for a in arrays]
    stacked = np.concatenate(
        [(c if c.ndim == 4 else c[None]).astype(np.float32, copy=False) for c in crops]
    )
    grid = np.empty((*patch, 3), dtype=np.float32)
    for axis in range(3):  # grid_sample wants (x, y, z) = (axis 2, axis 1, axis 0) in [-1, 1]
        scale = np.float32(2.0 / (region[axis] - 1.0))
        np.multiply(coords[axis] - np.float32(lo[axis]), scale, out=grid[..., 2 - axis])
    grid -= np.float32(1.0)
    sampled = F.grid_sample(
        torch.from_numpy(stacked)[None],
        torch.from_numpy(grid)[None],
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )[0].numpy()
    out, first = [], 0
    for array, crop in zip(arrays, crops, strict=True):
        n = crop.shape[0] if crop.ndim == 4 else 1
        part = sampled[first : first + n]
        first += n
        out.append((part if array.ndim == 4 else part[0]).astype(array.dtype, copy=False))
    return out


def flip_rotate(array: np.ndarray, draw: SpatialDraw) -> np.ndarray:
    """Apply the draw's flips then its 90-degree rotation to ``(*P)`` or ``(C, *P)``."""
    shift = array.ndim - 3
    if draw.flips:
        array = np.flip(array, axis=tuple(a + shift for a in draw.flips))
    if draw.rot90 is not None:
        k, (a, b) = draw.rot90
        array = np.rot90(array, k=k, axes=(a + shift, b + shift))
    return array


@dataclass
class IntensityDraw:
    """Random intensity parameters of one patch (None = not applied)."""

    scale: float | None
    shift: float | None
    gamma: float | None
    noise_std: float | None


def draw_intensity(rng: np.random.Generator, settings: AugmentSettings) -> IntensityDraw:
    """Draw the intensity augmentation of one patch (fixed draw order)."""
    s = settings
    scale = (
        rng.uniform(-s.scale_intensity, s.scale_intensity)
        if rng.random() < s.scale_intensity_prob
        else None
    )
    shift = (
        rng.uniform(-s.shift_intensity, s.shift_intensity)
        if rng.random() < s.shift_intensity_prob
        else None
    )
    gamma = rng.uniform(*s.gamma_range) if rng.random() < s.gamma_prob else None
    noise = rng.uniform(0.0, s.noise_std) if rng.random() < s.noise_prob else None
    return IntensityDraw(scale, shift, gamma, noise)


def apply_intensity(image: np.ndarray, draw: IntensityDraw, rng: np.random.Generator) -> np.ndarray:
    """Apply scale, shift, gamma, noise (in that order) to a float32 ``(C, *P)`` patch in place."""
    if draw.scale is not None:
        image *= np.float32(1.0 + draw.scale)
    if draw.shift is not None:
        image += np.float32(draw.shift)
    if draw.gamma is not None:
        image[...] = adjust_gamma(image, draw.gamma)
    if draw.noise_std is not None:
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(draw.noise_std)
    return image


def adjust_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """MONAI ``AdjustContrast``: ``((x - min) / (range + 1e-7)) ** gamma * range + min``."""
    low = float(image.min())
    span = float(image.max()) - low
    return (((image - low) / (span + 1e-7)) ** gamma * span + low).astype(np.float32)
