"""Surface-distance metrics of one binary class: HD95, ASSD, NSD (METHODS §10).

Definitions follow MONAI 1.6 (`compute_hausdorff_distance`, `compute_average_surface_distance`,
`compute_surface_dice(use_subvoxels=False)`), so tests assert equality with it:

- surface voxels = mask minus its erosion with the 6-neighbourhood cross (4 in 2D), voxels
  outside the image counting as background (scipy ``binary_erosion`` defaults);
- ``d(P->G)``: for every surface voxel of P the Euclidean distance in mm to the nearest
  surface voxel of G, and vice versa.

Speed: surfaces and distances are computed once (:func:`surface_distances`) and shared by
HD95, ASSD and NSD (:func:`surface_metrics`). Work is restricted to the bounding box of
``P ∪ G``, which contains every surface voxel, so the result is exact. Distances come from
a KD-tree over the target surface (exact nearest neighbour, no dense distance transform),
and voxels on both surfaces get distance 0 without a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.spatial import cKDTree

from segbalance.evaluate._validation import (
    as_mask,
    check_choice,
    check_nonnegative,
    mask_pair_with_spacing,
)

HD95Mode = Literal["max", "union"]
HD95_MODES: tuple[str, ...] = ("max", "union")
EmptyPenalty = float | Literal["diagonal"]


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Tight bounding box of the ``True`` voxels of ``mask`` as slices; ``None`` if empty."""
    if mask.ndim == 1:
        hits = np.flatnonzero(mask)
        return None if hits.size == 0 else (slice(int(hits[0]), int(hits[-1]) + 1),)
    # Two passes over the volume: rows of axis 0, and the projection onto the other axes.
    first = mask.reshape(mask.shape[0], -1).any(axis=1)
    hits = np.flatnonzero(first)
    if hits.size == 0:
        return None
    rest = bounding_box(mask[hits[0] : hits[-1] + 1].any(axis=0))
    assert rest is not None  # a non-empty slab has a non-empty projection
    return (slice(int(hits[0]), int(hits[-1]) + 1), *rest)


def _surface_unchecked(mask: np.ndarray) -> np.ndarray:
    # Erosion with the cross = AND of the voxel and its 2*ndim face neighbours (zero padded).
    padded = np.pad(mask, 1)
    inner = mask.copy()
    for axis in range(mask.ndim):
        for start in (0, 2):
            view = [slice(1, -1)] * mask.ndim
            view[axis] = slice(start, start + mask.shape[axis])
            inner &= padded[tuple(view)]
    return mask & ~inner


def surface_voxels(mask: Any) -> np.ndarray:
    """Boolean surface of a mask ``(*S)``: ``mask & ~binary_erosion(mask)`` (cross structure).

    Equal to MONAI ``get_mask_edges`` (spacing=None) and medpy's surface; voxels on the image
    border are surface voxels.
    """
    return _surface_unchecked(as_mask(mask, "mask"))


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances (mm) between a prediction P and a reference G.

    Attributes:
        pred_to_ref: float64 ``(n_P,)``, one distance per surface voxel of P (``inf`` if G is empty).
        ref_to_pred: float64 ``(n_G,)``, one distance per surface voxel of G (``inf`` if P is empty).
        diagonal_mm: length of the image diagonal in mm (the default penalty).
    """

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray
    diagonal_mm: float

    @property
    def pred_empty(self) -> bool:
        return self.pred_to_ref.size == 0

    @property
    def ref_empty(self) -> bool:
        return self.ref_to_pred.size == 0

    def _empty_value(self, empty_penalty: EmptyPenalty) -> float | None:
        # Both empty -> 0, one empty -> penalty, neither -> None (compute normally).
        if self.pred_empty and self.ref_empty:
            return 0.0
        if self.pred_empty or self.ref_empty:
            if isinstance(empty_penalty, str):
                check_choice(empty_penalty, "empty_penalty", ("diagonal",))
                return self.diagonal_mm
            return check_nonnegative(empty_penalty, "empty_penalty")
        return None

    def hd95(
        self,
        hd95_mode: HD95Mode = "max",
        empty_penalty: EmptyPenalty = "diagonal",
        percentile: float = 95.0,
    ) -> float:
        """Robust Hausdorff distance in mm; see :func:`hd95`."""
        check_choice(hd95_mode, "hd95_mode", HD95_MODES)
        empty = self._empty_value(empty_penalty)
        if empty is not None:
            return empty
        return hd_percentile(self.pred_to_ref, self.ref_to_pred, hd95_mode, percentile)

    def assd(self, empty_penalty: EmptyPenalty = "diagonal") -> float:
        """Average symmetric surface distance in mm; see :func:`assd`."""
        empty = self._empty_value(empty_penalty)
        if empty is not None:
            return empty
        total = float(self.pred_to_ref.sum()) + float(self.ref_to_pred.sum())
        return total / (self.pred_to_ref.size + self.ref_to_pred.size)

    def nsd(self, tolerance: float = 2.0) -> float:
        """Normalised surface distance (surface Dice) at ``tolerance`` mm; see :func:`nsd`."""
        tau = check_nonnegative(tolerance, "tolerance")
        n_total = self.pred_to_ref.size + self.ref_to_pred.size
        if n_total == 0:
            return 1.0  # both empty: follows the Dice policy (MONAI would give NaN)
        n_close = np.count_nonzero(self.pred_to_ref <= tau) + np.count_nonzero(
            self.ref_to_pred <= tau
        )
        return float(n_close) / float(n_total)


def hd_percentile(
    pred_to_ref: np.ndarray,
    ref_to_pred: np.ndarray,
    hd95_mode: HD95Mode = "max",
    percentile: float = 95.0,
) -> float:
    """Combine two non-empty directed distance sets into a percentile Hausdorff distance.

    ``"max"`` (default, MONAI / DeepMind): ``max(q(d_P->G), q(d_G->P))``; ``"union"`` (medpy):
    ``q(d_P->G ∪ d_G->P)``; q = numpy percentile with linear interpolation.
    Example (METHODS §10): d_P->G = 18 zeros + two 10 mm, d_G->P = 20 zeros -> 10.0 / 0.5.
    """
    check_choice(hd95_mode, "hd95_mode", HD95_MODES)
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"Expected percentile in [0, 100] but got {percentile!r}")
    a = np.asarray(pred_to_ref, dtype=np.float64).ravel()
    b = np.asarray(ref_to_pred, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(
            f"Expected two non-empty distance sets but got sizes {a.size} and {b.size}"
        )
    if hd95_mode == "union":
        return float(np.percentile(np.concatenate([a, b]), percentile))
    return float(max(np.percentile(a, percentile), np.percentile(b, percentile)))


def _coordinates_mm(
    flat_index: np.ndarray, shape: tuple[int, ...], spacing: np.ndarray
) -> np.ndarray:
    # flatnonzero + unravel is ~10x faster than a 3D nonzero on large crops
    return np.column_stack(np.unravel_index(flat_index, shape)).astype(np.float64) * spacing


def _directed(
    query_flat: np.ndarray,
    target_surface: np.ndarray,
    tree: cKDTree,
    spacing: np.ndarray,
) -> np.ndarray:
    # Query voxels that lie on the target surface too are at distance 0: skip the tree.
    distances = np.zeros(query_flat.size, dtype=np.float64)
    off = ~target_surface.ravel()[query_flat]
    if off.any():
        coords = _coordinates_mm(query_flat[off], target_surface.shape, spacing)
        distances[off] = tree.query(coords, k=1)[0]
    return distances


def surface_distances(pred: Any, ref: Any, spacing: Any = None) -> SurfaceDistances:
    """Surfaces and both directed distance sets of two masks, computed once.

    Args:
        pred: prediction mask ``(*S)``, S 2D or 3D (bool or {0, 1}; numpy or torch).
        ref: reference mask, same shape.
        spacing: mm per axis (length ``len(S)``); ``None`` means 1 mm.

    Returns:
        :class:`SurfaceDistances` whose ``hd95()``, ``assd()`` and ``nsd()`` share the work.
    """
    pred_mask, ref_mask, sp = mask_pair_with_spacing(pred, ref, spacing)
    diagonal = float(np.sqrt(np.sum((np.asarray(pred_mask.shape, dtype=np.float64) * sp) ** 2)))
    empty = np.zeros(0, dtype=np.float64)
    box = bounding_box(pred_mask | ref_mask)
    if box is None:
        return SurfaceDistances(empty, empty, diagonal)
    # The union's box holds every surface voxel of both masks and the erosion treats the
    # outside as background, so surfaces and distances in the crop equal full-image ones.
    surf_pred = _surface_unchecked(pred_mask[box])
    surf_ref = _surface_unchecked(ref_mask[box])
    flat_pred = np.flatnonzero(surf_pred)
    flat_ref = np.flatnonzero(surf_ref)
    n_pred, n_ref = flat_pred.size, flat_ref.size
    if n_pred == 0 or n_ref == 0:
        # Distance to an empty set is infinite (MONAI convention); metrics apply the policy.
        return SurfaceDistances(np.full(n_pred, np.inf), np.full(n_ref, np.inf), diagonal)
    shape = surf_pred.shape
    tree_ref = cKDTree(_coordinates_mm(flat_ref, shape, sp), balanced_tree=False)
    tree_pred = cKDTree(_coordinates_mm(flat_pred, shape, sp), balanced_tree=False)
    pred_to_ref = _directed(flat_pred, surf_ref, tree_ref, sp)
    ref_to_pred = _directed(flat_ref, surf_pred, tree_pred, sp)
    return SurfaceDistances(pred_to_ref, ref_to_pred, diagonal)


def hd95(
    pred: Any,
    ref: Any,
    spacing: Any = None,
    *,
    hd95_mode: HD95Mode = "max",
    empty_penalty: EmptyPenalty = "diagonal",
) -> float:
    """95th-percentile Hausdorff distance in mm between two masks ``(*S)``.

    Args:
        pred, ref: masks ``(*S)``, S 2D or 3D; spacing: mm per axis (default 1 mm).
        hd95_mode: ``"max"`` = max of the two directed 95th percentiles (MONAI
            ``compute_hausdorff_distance(percentile=95)``); ``"union"`` = 95th percentile of
            both sets together (medpy ``hd95``).
        empty_penalty: value when exactly one mask is empty: ``"diagonal"`` (image diagonal
            in mm) or a number in mm (BraTS uses 374). Both empty -> 0.0.
    """
    return surface_distances(pred, ref, spacing).hd95(hd95_mode, empty_penalty)


def assd(
    pred: Any, ref: Any, spacing: Any = None, *, empty_penalty: EmptyPenalty = "diagonal"
) -> float:
    """Average symmetric surface distance in mm: mean of all distances of both directions.

    Same as MONAI ``compute_average_surface_distance(symmetric=True)`` (one mean over the
    concatenated sets, not the mean of the two directed means). Empty policy as :func:`hd95`.
    """
    return surface_distances(pred, ref, spacing).assd(empty_penalty)


def nsd(pred: Any, ref: Any, spacing: Any = None, tolerance: float = 2.0) -> float:
    """Normalised surface distance (surface Dice) at ``tolerance`` mm of two masks ``(*S)``.

    Fraction of surface voxels of both masks within ``tolerance`` of the other surface
    (MONAI ``compute_surface_dice``, ``use_subvoxels=False``). Both empty -> 1.0, one empty -> 0.0.
    """
    return surface_distances(pred, ref, spacing).nsd(tolerance)


def surface_metrics(
    pred: Any,
    ref: Any,
    spacing: Any = None,
    tolerance: float = 2.0,
    *,
    hd95_mode: HD95Mode = "max",
    empty_penalty: EmptyPenalty = "diagonal",
) -> dict[str, float]:
    """HD95, ASSD and NSD from one surface-distance computation: keys ``hd95, assd, nsd``."""
    distances = surface_distances(pred, ref, spacing)
    return {
        "hd95": distances.hd95(hd95_mode, empty_penalty),
        "assd": distances.assd(empty_penalty),
        "nsd": distances.nsd(tolerance),
    }
