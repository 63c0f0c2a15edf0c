"""Overlap metrics of one binary class: Dice, IoU, precision, recall (METHODS §10).

Empty-mask policy (explicit, never an accidental NaN): when the ratio would be
0/0 the value is 1.0 if prediction and reference are both empty and 0.0
otherwise. Concretely, with P the prediction and G the reference:

- Dice, IoU: both empty -> 1.0; exactly one empty -> 0.0 (BraTS 2023 convention).
- precision = |P∩G|/|P|: P empty -> 1.0 if G is empty too, else 0.0.
- recall = |P∩G|/|G|: G empty -> 1.0 if P is empty too, else 0.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segbalance.evaluate._validation import mask_pair


def overlap_counts(pred: Any, ref: Any) -> tuple[int, int, int]:
    """Return ``(|P∩G|, |P|, |G|)`` of two boolean masks ``(*S)`` of one class."""
    pred_mask, ref_mask = mask_pair(pred, ref)
    return _counts(pred_mask, ref_mask)


def _counts(pred_mask: np.ndarray, ref_mask: np.ndarray) -> tuple[int, int, int]:
    intersection = int(np.count_nonzero(pred_mask & ref_mask))
    return intersection, int(np.count_nonzero(pred_mask)), int(np.count_nonzero(ref_mask))


def _ratio(numerator: float, denominator: float, both_empty: bool) -> float:
    # 0/0 only happens on empty masks: apply the documented policy instead of NaN
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return float(numerator) / float(denominator)


def dice(pred: Any, ref: Any) -> float:
    """Dice coefficient ``2|P∩G| / (|P| + |G|)``.

    Args:
        pred: prediction mask ``(*S)``, S 2D or 3D; bool, or numeric with values in {0, 1};
            numpy array or torch tensor (moved to the CPU).
        ref: reference mask, same shape.

    Returns:
        Dice in [0, 1]; both empty -> 1.0, exactly one empty -> 0.0.
    """
    inter, n_pred, n_ref = overlap_counts(pred, ref)
    return _ratio(2 * inter, n_pred + n_ref, n_pred == 0 and n_ref == 0)


def iou(pred: Any, ref: Any) -> float:
    """Intersection over union ``|P∩G| / |P∪G|`` (Jaccard) of two masks ``(*S)``.

    Both empty -> 1.0, exactly one empty -> 0.0.
    """
    inter, n_pred, n_ref = overlap_counts(pred, ref)
    return _ratio(inter, n_pred + n_ref - inter, n_pred == 0 and n_ref == 0)


def precision(pred: Any, ref: Any) -> float:
    """Precision (positive predictive value) ``|P∩G| / |P|`` of two masks ``(*S)``.

    Empty prediction -> 1.0 if the reference is empty too, else 0.0.
    """
    inter, n_pred, n_ref = overlap_counts(pred, ref)
    return _ratio(inter, n_pred, n_pred == 0 and n_ref == 0)


def recall(pred: Any, ref: Any) -> float:
    """Recall (sensitivity) ``|P∩G| / |G|`` of two masks ``(*S)``.

    Empty reference -> 1.0 if the prediction is empty too, else 0.0.
    """
    inter, n_pred, n_ref = overlap_counts(pred, ref)
    return _ratio(inter, n_ref, n_pred == 0 and n_ref == 0)


def overlap_metrics(pred: Any, ref: Any) -> dict[str, float]:
    """All four overlap metrics from one pass: keys ``dice, iou, precision, recall``."""
    inter, n_pred, n_ref = overlap_counts(pred, ref)
    both_empty = n_pred == 0 and n_ref == 0
    return {
        "dice": _ratio(2 * inter, n_pred + n_ref, both_empty),
        "iou": _ratio(inter, n_pred + n_ref - inter, both_empty),
        "precision": _ratio(inter, n_pred, both_empty),
        "recall": _ratio(inter, n_ref, both_empty),
    }
