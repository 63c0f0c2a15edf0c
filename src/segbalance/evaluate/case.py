"""Per-case metric rows for integer label maps (the ``per_case.csv`` columns of DESIGN.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from segbalance.evaluate._validation import as_spacing, check_choice, label_pair
from segbalance.evaluate.lesions import (
    LESION_MATCHES,
    LESION_PROTOCOLS,
    LesionMatch,
    LesionProtocol,
    lesion_metrics,
)
from segbalance.evaluate.metrics import overlap_metrics
from segbalance.evaluate.surface import EmptyPenalty, HD95Mode, surface_metrics

#: Keys of one row, in ``per_case.csv`` order (without ``case`` and ``class_name``).
CASE_METRIC_KEYS: tuple[str, ...] = (
    "class",
    "dice",
    "iou",
    "precision",
    "recall",
    "hd95",
    "assd",
    "nsd",
    "lesion_tp",
    "lesion_fp",
    "lesion_fn",
    "lesion_f1",
)


def case_metrics(
    pred_labels: Any,
    ref_labels: Any,
    classes: Sequence[int],
    spacing: Any = None,
    tolerance: float | Mapping[int, float] = 2.0,
    *,
    hd95_mode: HD95Mode = "max",
    empty_penalty: EmptyPenalty = "diagonal",
    match: LesionMatch = "overlap",
    lesion_protocol: LesionProtocol = "standard",
    dil: int = 3,
    size_threshold: float = 50.0,
) -> list[dict[str, Any]]:
    """Every metric of one case, one row per foreground class.

    Args:
        pred_labels, ref_labels: integer label maps ``(*S)``, S 2D or 3D (numpy or torch).
        classes: foreground class values to score (e.g. ``[1, 2]``).
        spacing: mm per axis (default 1 mm).
        tolerance: NSD tolerance in mm, one float or ``{class: tolerance}``.
        hd95_mode, empty_penalty: see :func:`segbalance.evaluate.hd95`.
        match, lesion_protocol, dil, size_threshold: see :func:`segbalance.evaluate.lesion_metrics`;
            with ``lesion_protocol="brats2023"`` the rows also hold ``lesion_dice``, ``lesion_hd95``.

    Returns:
        One dict per class with the keys :data:`CASE_METRIC_KEYS` (plus the BraTS scores).
    """
    pred, ref = label_pair(pred_labels, ref_labels)
    sp = as_spacing(spacing, pred.ndim)
    check_choice(match, "match", LESION_MATCHES)
    check_choice(lesion_protocol, "lesion_protocol", LESION_PROTOCOLS)
    rows = []
    for value in classes:
        cls = int(value)
        if isinstance(tolerance, Mapping):
            if cls not in tolerance:
                raise ValueError(
                    f"Expected tolerance to have an entry for class {cls} but got keys {sorted(tolerance)}"
                )
            tau = tolerance[cls]
        else:
            tau = tolerance
        pred_mask = pred == cls
        ref_mask = ref == cls
        row: dict[str, Any] = {"class": cls}
        row.update(overlap_metrics(pred_mask, ref_mask))
        row.update(
            surface_metrics(
                pred_mask, ref_mask, sp, tau, hd95_mode=hd95_mode, empty_penalty=empty_penalty
            )
        )
        lesions = lesion_metrics(
            pred_mask,
            ref_mask,
            sp,
            match=match,
            lesion_protocol=lesion_protocol,
            dil=dil,
            size_threshold=size_threshold,
        )
        for key in (
            "lesion_tp",
            "lesion_fp",
            "lesion_fn",
            "lesion_f1",
            "lesion_dice",
            "lesion_hd95",
        ):
            if key in lesions:
                row[key] = lesions[key]
        rows.append(row)
    return rows


def class_values(labels: np.ndarray) -> list[int]:
    """Sorted non-zero label values present in a label map (a convenient ``classes``)."""
    values = np.unique(np.asarray(labels))
    return [int(v) for v in values if v != 0]
