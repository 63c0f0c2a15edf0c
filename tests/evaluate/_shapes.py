"""Test helpers: seeded ellipsoid blobs and MONAI reference calls (one-hot batch tensors)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import (
    DiceMetric,
    compute_average_surface_distance,
    compute_hausdorff_distance,
    compute_surface_dice,
)


def ellipsoids(
    shape: Sequence[int],
    centres: np.ndarray,
    radii: np.ndarray,
) -> np.ndarray:
    """Union of axis-aligned ellipsoids (2D or 3D); centres/radii are ``(n, ndim)`` in voxels."""
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    mask = np.zeros(tuple(shape), dtype=bool)
    for centre, radius in zip(centres, radii, strict=True):
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius, strict=True))
        mask |= inside <= 1.0
    return mask


def blob_pair(
    shape: Sequence[int], n_blobs: int, seed: int, jitter: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Reference blobs and a perturbed prediction (shifted centres, scaled radii, one stray blob)."""
    rng = np.random.default_rng(seed)
    dims = np.asarray(shape, dtype=np.float64)
    centres = rng.uniform(0.15, 0.85, size=(n_blobs, len(shape))) * dims
    radii = rng.uniform(0.05, 0.15, size=(n_blobs, len(shape))) * dims + 1.0
    ref = ellipsoids(shape, centres, radii)
    moved = centres + rng.normal(0.0, jitter, size=centres.shape)
    scaled = radii * rng.uniform(0.8, 1.2, size=radii.shape)
    stray_centre = rng.uniform(0.1, 0.9, size=(1, len(shape))) * dims
    pred = ellipsoids(
        shape, np.vstack([moved, stray_centre]), np.vstack([scaled, [[1.5] * len(shape)]])
    )
    return pred, ref


def _batch(mask: np.ndarray) -> torch.Tensor:
    # MONAI metrics take one-hot (B, C, *S) tensors; one foreground channel is enough here
    return torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]


def monai_surface(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None, tolerance: float
) -> dict[str, float]:
    """HD95 / ASSD / NSD from MONAI's CPU functions for two non-empty masks."""
    yp, yt = _batch(pred), _batch(ref)
    sp = None if spacing is None else [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(yp, yt, include_background=True, percentile=95, spacing=sp)
        asd = compute_average_surface_distance(
            yp, yt, include_background=True, symmetric=True, spacing=sp
        )
        nsd = compute_surface_dice(yp, yt, [tolerance], include_background=True, spacing=sp)
    return {"hd95": hd.item(), "assd": asd.item(), "nsd": nsd.item()}


def monai_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """MONAI ``DiceMetric`` (include_background, ignore_empty=False) of one mask pair."""
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    return metric(_batch(pred), _batch(ref)).item()
