"""Lesion-wise detection: METHODS worked example and an independent slow implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segbalance.evaluate import detection_rate_by_size, lesion_f1, lesion_metrics


def slow_lesion_metrics(pred, ref, spacing, match="overlap", iou_threshold=0.1):
    """Explicit loops over scipy.ndimage.label components (26 / 8 connectivity)."""
    structure = np.ones((3,) * ref.ndim, dtype=bool)
    gt_labels, n_gt = ndimage.label(ref, structure=structure)
    pred_labels, n_pred = ndimage.label(pred, structure=structure)
    voxel = float(np.prod(spacing))
    lesions = []
    touched = set()
    for i in range(1, n_gt + 1):
        lesion = gt_labels == i
        hit_ids = [j for j in range(1, n_pred + 1) if np.any(lesion & (pred_labels == j))]
        touched.update(hit_ids)
        union = np.isin(pred_labels, hit_ids) if hit_ids else np.zeros_like(lesion)
        inter = np.count_nonzero(lesion & union)
        iou = inter / np.count_nonzero(lesion | union)
        detected = inter > 0 if match == "overlap" else iou > iou_threshold
        size = int(lesion.sum())
        lesions.append(
            {"size_voxels": size, "size_mm3": size * voxel, "detected": detected, "iou": iou}
        )
    tp = sum(item["detected"] for item in lesions)
    fp = sum(1 for j in range(1, n_pred + 1) if j not in touched)
    return tp, fp, n_gt - tp, lesions


def _random_lesions(shape, n, rng, max_radius=4):
    mask = np.zeros(shape, dtype=bool)
    for _ in range(n):
        centre = [rng.integers(0, s) for s in shape]
        radius = rng.integers(0, max_radius + 1, size=len(shape))
        box = tuple(slice(max(c - r, 0), c + r + 1) for c, r in zip(centre, radius, strict=True))
        mask[box] = True
    return mask


def test_worked_example_of_methods() -> None:
    # GT lesions A and B; the prediction overlaps A and has one stray component.
    ref = np.zeros((20, 20, 20), dtype=bool)
    ref[2:6, 2:6, 2:6] = True  # A
    ref[12:16, 12:16, 12:16] = True  # B
    pred = np.zeros_like(ref)
    pred[4:8, 4:8, 4:8] = True  # overlaps A
    pred[2:4, 15:18, 2:4] = True  # stray
    out = lesion_metrics(pred, ref)
    assert (out["lesion_tp"], out["lesion_fn"], out["lesion_fp"]) == (1, 1, 1)
    assert out["lesion_f1"] == 0.5
    assert [item["detected"] for item in out["lesions"]] == [True, False]
    assert [item["size_voxels"] for item in out["lesions"]] == [64, 64]


def test_26_connectivity_in_3d_and_8_in_2d() -> None:
    ref = np.zeros((6, 6, 6), dtype=bool)
    ref[1, 1, 1] = ref[2, 2, 2] = True  # corner neighbours: one lesion with 26-connectivity
    pred = np.zeros_like(ref)
    pred[2, 2, 2] = True
    out = lesion_metrics(pred, ref)
    assert out["n_gt_lesions"] == 1 and out["lesion_tp"] == 1 and out["lesion_fn"] == 0
    ref2 = np.zeros((5, 5), dtype=bool)
    ref2[1, 1] = ref2[2, 2] = True
    assert lesion_metrics(np.zeros_like(ref2), ref2)["lesion_fn"] == 1


@pytest.mark.parametrize("match", ["overlap", "iou"])
@pytest.mark.parametrize(("shape", "seed"), [((24, 26, 22), 0), ((24, 26, 22), 1), ((48, 40), 2)])
def test_matches_slow_scipy_label_implementation(shape, seed, match) -> None:
    rng = np.random.default_rng(seed)
    ref = _random_lesions(shape, 14, rng)
    # half the GT lesions shifted by a voxel (high IoU), sparse hits elsewhere (low IoU)
    gt_labels, n_gt = ndimage.label(ref, structure=np.ones((3,) * len(shape)))
    kept = np.isin(gt_labels, rng.choice(np.arange(1, n_gt + 1), n_gt // 2, replace=False))
    pred = _random_lesions(shape, 8, rng) | np.roll(kept, 1, axis=0)
    pred |= ref & (rng.random(shape) < 0.03)
    spacing = (0.8, 1.5, 2.0)[: len(shape)]
    tp, fp, fn, lesions = slow_lesion_metrics(pred, ref, spacing, match, 0.1)
    out = lesion_metrics(pred, ref, spacing, match=match)
    assert tp > 0 and fn > 0
    assert (out["lesion_tp"], out["lesion_fp"], out["lesion_fn"]) == (tp, fp, fn)
    assert out["lesion_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    # cc3d and scipy number components in the same (raster) order
    for mine, theirs in zip(out["lesions"], lesions, strict=True):
        assert mine["size_voxels"] == theirs["size_voxels"]
        assert mine["size_mm3"] == pytest.approx(theirs["size_mm3"])
        assert mine["detected"] == theirs["detected"]
        assert mine["iou"] == pytest.approx(theirs["iou"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), threshold=st.sampled_from([0.0, 0.1, 0.3, 0.5]))
def test_property_iou_matching_equals_slow(seed, threshold) -> None:
    rng = np.random.default_rng(seed)
    ref = _random_lesions((10, 11, 9), 5, rng, max_radius=2)
    pred = _random_lesions((10, 11, 9), 5, rng, max_radius=2)
    tp, fp, fn, _ = slow_lesion_metrics(pred, ref, (1, 1, 1), "iou", threshold)
    out = lesion_metrics(pred, ref, match="iou", iou_threshold=threshold)
    assert (out["lesion_tp"], out["lesion_fp"], out["lesion_fn"]) == (tp, fp, fn)


def test_iou_threshold_makes_small_overlap_a_miss_but_not_a_false_positive() -> None:
    ref = np.zeros((12, 12, 12), dtype=bool)
    ref[2:8, 2:8, 2:8] = True  # 216 voxels
    pred = np.zeros_like(ref)
    pred[7:10, 7:10, 7:10] = True  # overlaps one voxel: IoU = 1 / (216 + 27 - 1)
    overlap = lesion_metrics(pred, ref)
    strict = lesion_metrics(pred, ref, match="iou")
    assert (overlap["lesion_tp"], overlap["lesion_fp"], overlap["lesion_fn"]) == (1, 0, 0)
    assert (strict["lesion_tp"], strict["lesion_fp"], strict["lesion_fn"]) == (0, 0, 1)
    assert strict["lesions"][0]["iou"] == pytest.approx(1 / 242)


def test_empty_cases_and_torch() -> None:
    empty = np.zeros((8, 8, 8), dtype=bool)
    blob = empty.copy()
    blob[2:4, 2:4, 2:4] = True
    both = lesion_metrics(empty, empty)
    assert (both["lesion_tp"], both["lesion_fp"], both["lesion_fn"], both["lesion_f1"]) == (
        0,
        0,
        0,
        1.0,
    )
    fp_only = lesion_metrics(blob, empty)
    assert (fp_only["lesion_fp"], fp_only["lesion_f1"]) == (1, 0.0)
    fn_only = lesion_metrics(torch.zeros(8, 8, 8, dtype=torch.bool), torch.from_numpy(blob))
    assert (fn_only["lesion_fn"], fn_only["lesion_f1"]) == (1, 0.0)
    assert lesion_f1(0, 0, 0) == 1.0 and lesion_f1(3, 1, 2) == pytest.approx(6 / 9)


def test_detection_rate_by_size() -> None:
    details = [
        {"size_voxels": 3, "size_mm3": 6.0, "detected": False},
        {"size_voxels": 8, "size_mm3": 16.0, "detected": True},
        {"size_voxels": 40, "size_mm3": 80.0, "detected": True},
        {"size_voxels": 99, "size_mm3": 198.0, "detected": False},
        {"size_voxels": 5000, "size_mm3": 10000.0, "detected": True},
    ]
    rows = detection_rate_by_size(details)
    assert [r["bin"] for r in rows] == ["[0, 10)", "[10, 100)", "[100, 1000)", "[1000, inf)"]
    assert [r["n_lesions"] for r in rows] == [2, 2, 0, 1]
    assert [r["n_detected"] for r in rows] == [1, 1, 0, 1]
    assert rows[0]["detection_rate"] == 0.5 and rows[3]["detection_rate"] == 1.0
    assert math.isnan(rows[2]["detection_rate"])
    mm = detection_rate_by_size(details, bins=(0, 10, 100, math.inf), unit="mm3")
    assert [r["n_lesions"] for r in mm] == [1, 2, 2]
    assert [r["detection_rate"] for r in mm] == [0.0, 1.0, 0.5]


def test_detection_rate_from_lesion_metrics_result() -> None:
    ref = np.zeros((30, 30, 30), dtype=bool)
    ref[1:3, 1:3, 1:3] = True  # 8 voxels, detected
    ref[10:12, 10:12, 10:11] = True  # 4 voxels, missed
    ref[20:25, 20:25, 20:25] = True  # 125 voxels, detected
    pred = np.zeros_like(ref)
    pred[2, 2, 2] = pred[22, 22, 22] = True
    rows = detection_rate_by_size(lesion_metrics(pred, ref, (1.0, 1.0, 2.0)), bins=(0, 10, 1000))
    assert [(r["n_lesions"], r["n_detected"]) for r in rows] == [(2, 1), (1, 1)]
    rows_mm = detection_rate_by_size(
        lesion_metrics(pred, ref, (1.0, 1.0, 2.0)), bins=(0, 10, 1000), unit="mm3"
    )
    assert [(r["n_lesions"], r["n_detected"]) for r in rows_mm] == [(1, 0), (2, 2)]
