"""Evaluation metrics for one binary class (METHODS §10); see ``docs/metrics.md``.

Every metric is a pure function of two masks ``(*S)`` (S 2D or 3D; bool or {0, 1}; numpy
arrays or torch tensors, moved to the CPU), with spacing in mm per axis. Empty masks
follow explicit policies (no accidental NaN). Torch is never imported here.
"""

from segbalance.evaluate.brats import BRATS_HD95_PENALTY, brats_lesion_wise
from segbalance.evaluate.case import CASE_METRIC_KEYS, case_metrics, class_values
from segbalance.evaluate.lesions import (
    DEFAULT_SIZE_BINS,
    detection_rate_by_size,
    lesion_f1,
    lesion_metrics,
    overlap_pairs,
)
from segbalance.evaluate.metrics import (
    dice,
    iou,
    overlap_counts,
    overlap_metrics,
    precision,
    recall,
)
from segbalance.evaluate.surface import (
    SurfaceDistances,
    assd,
    bounding_box,
    hd95,
    hd_percentile,
    nsd,
    surface_distances,
    surface_metrics,
    surface_voxels,
)

__all__ = [
    "BRATS_HD95_PENALTY",
    "CASE_METRIC_KEYS",
    "DEFAULT_SIZE_BINS",
    "SurfaceDistances",
    "assd",
    "bounding_box",
    "brats_lesion_wise",
    "case_metrics",
    "class_values",
    "detection_rate_by_size",
    "dice",
    "hd95",
    "hd_percentile",
    "iou",
    "lesion_f1",
    "lesion_metrics",
    "nsd",
    "overlap_counts",
    "overlap_metrics",
    "overlap_pairs",
    "precision",
    "recall",
    "surface_distances",
    "surface_metrics",
    "surface_voxels",
]
