"""Lesion-wise detection metrics of one binary class (METHODS §10, "Lesion-wise detection").

Lesions are connected components (26-connectivity in 3D, 8 in 2D) of the reference G and
the prediction P, labelled with :func:`segbalance.stats.label_components`. Matching uses
one pass over the voxels where both label maps are non-zero (a bincount over the joint
``(gt_label, pred_label)`` index), never a loop over lesions on the full volume.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from segbalance.evaluate._validation import check_choice, mask_pair_with_spacing
from segbalance.evaluate.surface import bounding_box
from segbalance.stats import label_components

LesionMatch = Literal["overlap", "iou"]
LESION_MATCHES: tuple[str, ...] = ("overlap", "iou")
LesionProtocol = Literal["standard", "brats2023"]
LESION_PROTOCOLS: tuple[str, ...] = ("standard", "brats2023")
SizeUnit = Literal["voxels", "mm3"]
SIZE_UNITS: tuple[str, ...] = ("voxels", "mm3")

#: Default size-bin edges for :func:`detection_rate_by_size`, right-open ``[lo, hi)``:
#: decades below 10, 10-100, 100-1000 and >= 1000 (voxels, or mm^3 with ``unit="mm3"``).
DEFAULT_SIZE_BINS: tuple[float, ...] = (0.0, 10.0, 100.0, 1000.0, math.inf)


def lesion_f1(tp: int, fp: int, fn: int) -> float:
    """Lesion F1 ``2TP / (2TP + FP + FN)``; nothing to detect and nothing predicted -> 1.0."""
    denominator = 2 * tp + fp + fn
    return 1.0 if denominator == 0 else 2.0 * tp / denominator


def overlap_pairs(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    n_pred: int,
    both: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every overlapping (GT component, predicted component) pair and its voxel count.

    Args:
        gt_labels, pred_labels: label maps ``(*S)`` with 0 = background, 1..n components;
        n_pred: number of predicted components;
        both: optional boolean ``(*S)`` = both foreground (saves recomputing it).

    Returns:
        ``(gt_ids, pred_ids, counts)``: int64 arrays ``(n_pairs,)`` with ids >= 1 and
        ``counts[k] = |GT_gt_ids[k] ∩ P_pred_ids[k]| > 0``.
    """
    if both is None:
        both = (gt_labels != 0) & (pred_labels != 0)
    # Flat indices of the (few) overlapping voxels: cheaper than boolean-indexing twice.
    where = np.flatnonzero(both)
    gt_values = gt_labels.reshape(-1)[where].astype(np.int64)
    pred_values = pred_labels.reshape(-1)[where].astype(np.int64)
    # One joint index gt * (n_pred + 1) + pred: sparse, so memory does not grow with
    # n_gt * n_pred.
    pairs, counts = np.unique(gt_values * (n_pred + 1) + pred_values, return_counts=True)
    return pairs // (n_pred + 1), pairs % (n_pred + 1), counts.astype(np.int64)


def crop_to_union(
    pred_mask: np.ndarray, ref_mask: np.ndarray, margin: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to the bounding box of their union grown by ``margin`` voxels.

    Components, their raster order (hence cc3d's numbering) and overlaps are unchanged,
    and labelling a crop is cheaper. Two empty masks give ``(1,) * ndim`` empty crops.
    """
    box = bounding_box(pred_mask | ref_mask)
    if box is None:
        box = (slice(0, 1),) * pred_mask.ndim
    box = tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n))
        for s, n in zip(box, pred_mask.shape, strict=True)
    )
    return pred_mask[box], ref_mask[box]


def foreground_sizes(labels: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Voxel count of components 0..n of ``labels``, counting only voxels of ``mask``.

    Same as :func:`segbalance.stats.component_sizes` when ``mask`` is the labelled mask,
    but touches only the foreground voxels (a full-volume bincount is ~10x slower).
    """
    values = labels.reshape(-1)[np.flatnonzero(mask)]
    return np.bincount(values, minlength=n + 1)


def lesion_metrics(
    pred: Any,
    ref: Any,
    spacing: Any = None,
    *,
    match: LesionMatch = "overlap",
    iou_threshold: float = 0.1,
    lesion_protocol: LesionProtocol = "standard",
    dil: int = 3,
    size_threshold: float = 50.0,
) -> dict[str, Any]:
    """Lesion-wise detection counts and F1 of two masks ``(*S)`` (S 2D or 3D).

    Args:
        pred, ref: prediction and reference masks (bool or {0, 1}; numpy or torch).
        spacing: mm per axis (default 1 mm); used for lesion sizes in mm^3.
        match: ``"overlap"`` (default): a GT lesion is detected if some predicted component
            overlaps it by >= 1 voxel; ``"iou"``: if IoU(GT lesion, union of the predicted
            components overlapping it) > ``iou_threshold``.
        lesion_protocol: ``"standard"`` (above) or ``"brats2023"``, which delegates to
            :func:`segbalance.evaluate.brats.brats_lesion_wise` (uses ``dil`` and
            ``size_threshold``; ``match`` is ignored).

    Returns:
        ``{"lesion_tp", "lesion_fp", "lesion_fn"`` (ints), ``"lesion_f1"`` (float),
        ``"n_gt_lesions", "n_pred_lesions", "lesions"}``. FP = predicted components that
        overlap no GT lesion (in both match modes). ``lesions`` has one dict per GT lesion:
        ``label, size_voxels, size_mm3, detected, iou`` (2D: size_mm3 is an area in mm^2).
    """
    check_choice(lesion_protocol, "lesion_protocol", LESION_PROTOCOLS)
    if lesion_protocol == "brats2023":
        from segbalance.evaluate.brats import brats_lesion_wise

        return brats_lesion_wise(pred, ref, spacing, dil=dil, size_threshold=size_threshold)
    check_choice(match, "match", LESION_MATCHES)
    threshold = float(iou_threshold)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"Expected iou_threshold in [0, 1) but got {iou_threshold!r}")
    pred_mask, ref_mask, sp = mask_pair_with_spacing(pred, ref, spacing)
    pred_mask, ref_mask = crop_to_union(pred_mask, ref_mask)
    gt_labels, n_gt = label_components(ref_mask)
    pred_labels, n_pred = label_components(pred_mask)
    gt_ids, pred_ids, counts = overlap_pairs(gt_labels, pred_labels, n_pred, pred_mask & ref_mask)
    gt_sizes = foreground_sizes(gt_labels, ref_mask, n_gt)[1:]
    pred_sizes = foreground_sizes(pred_labels, pred_mask, n_pred)

    intersection = _sum_by(gt_ids, counts, n_gt)
    # |union of the predicted components touching GT_i|, then |GT_i ∪ that union|
    matched_pred_volume = _sum_by(gt_ids, pred_sizes[pred_ids], n_gt)
    union = gt_sizes + matched_pred_volume - intersection
    iou = np.divide(intersection, union, out=np.zeros(n_gt, dtype=np.float64), where=union > 0)
    detected = intersection > 0 if match == "overlap" else iou > threshold
    tp = int(np.count_nonzero(detected))
    fn = n_gt - tp
    fp = n_pred - int(np.unique(pred_ids).size)
    voxel_volume = float(np.prod(sp))
    lesions = [
        {
            "label": i + 1,
            "size_voxels": int(gt_sizes[i]),
            "size_mm3": float(gt_sizes[i]) * voxel_volume,
            "detected": bool(detected[i]),
            "iou": float(iou[i]),
        }
        for i in range(n_gt)
    ]
    return {
        "lesion_tp": tp,
        "lesion_fp": fp,
        "lesion_fn": fn,
        "lesion_f1": lesion_f1(tp, fp, fn),
        "n_gt_lesions": n_gt,
        "n_pred_lesions": n_pred,
        "lesions": lesions,
    }


def _sum_by(ids: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    # Sum of values per id 1..n (ids >= 1) as int64; bincount of float weights is exact here.
    sums = np.bincount(ids, weights=values, minlength=n + 1)[1:]
    return np.rint(sums).astype(np.int64)


def _bin_name(low: float, high: float) -> str:
    def fmt(value: float) -> str:
        return "inf" if math.isinf(value) else f"{value:g}"

    return f"[{fmt(low)}, {fmt(high)})"


def detection_rate_by_size(
    lesion_details: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    bins: Sequence[float] = DEFAULT_SIZE_BINS,
    unit: SizeUnit = "voxels",
) -> list[dict[str, Any]]:
    """Detection rate of GT lesions per size bin.

    Args:
        lesion_details: the ``"lesions"`` list of :func:`lesion_metrics` (lists of several
            cases may be concatenated), or a whole :func:`lesion_metrics` result.
        bins: increasing bin edges; bins are right-open ``[lo, hi)``. Default
            :data:`DEFAULT_SIZE_BINS` = (0, 10, 100, 1000, inf). Lesions outside every bin
            are not counted.
        unit: ``"voxels"`` (``size_voxels``) or ``"mm3"`` (``size_mm3``).

    Returns:
        One dict per bin: ``bin`` (e.g. ``"[10, 100)"``), ``low``, ``high``, ``n_lesions``,
        ``n_detected``, ``detection_rate`` (NaN for a bin without lesions: nothing to rate).
    """
    check_choice(unit, "unit", SIZE_UNITS)
    if isinstance(lesion_details, Mapping):
        lesion_details = lesion_details["lesions"]
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(
            f"Expected at least two strictly increasing bin edges but got {list(bins)}"
        )
    key = "size_voxels" if unit == "voxels" else "size_mm3"
    sizes = np.asarray([float(lesion[key]) for lesion in lesion_details], dtype=np.float64)
    found = np.asarray([bool(lesion["detected"]) for lesion in lesion_details], dtype=bool)
    rows = []
    for low, high in itertools.pairwise(edges.tolist()):
        in_bin = (sizes >= low) & (sizes < high)
        n_lesions = int(np.count_nonzero(in_bin))
        n_detected = int(np.count_nonzero(in_bin & found))
        rows.append(
            {
                "bin": _bin_name(low, high),
                "low": float(low),
                "high": float(high),
                "n_lesions": n_lesions,
                "n_detected": n_detected,
                "detection_rate": n_detected / n_lesions if n_lesions else math.nan,
            }
        )
    return rows
