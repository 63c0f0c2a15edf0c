"""case_metrics on integer label maps: columns, MONAI values per class, hand lesion counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbalance.evaluate import CASE_METRIC_KEYS, case_metrics, class_values

from ._shapes import blob_pair, monai_dice, monai_surface


def _label_maps() -> tuple[np.ndarray, np.ndarray]:
    pred1, ref1 = blob_pair((32, 30, 28), 3, seed=21, jitter=1.0)
    pred2, ref2 = blob_pair((32, 30, 28), 2, seed=22, jitter=1.0)
    ref = np.where(ref2, 2, np.where(ref1, 1, 0)).astype(np.uint8)
    pred = np.where(pred2, 2, np.where(pred1, 1, 0)).astype(np.int64)
    return pred, ref


def test_rows_match_monai_per_class() -> None:
    pred, ref = _label_maps()
    spacing = (1.0, 0.7, 1.8)
    rows = case_metrics(pred, ref, [1, 2], spacing, tolerance={1: 2.0, 2: 1.0})
    assert [r["class"] for r in rows] == [1, 2]
    for row, tau in zip(rows, (2.0, 1.0), strict=True):
        assert tuple(row) == CASE_METRIC_KEYS
        p, g = pred == row["class"], ref == row["class"]
        assert row["dice"] == pytest.approx(monai_dice(p, g), rel=1e-6)
        inter = np.count_nonzero(p & g)
        assert row["iou"] == pytest.approx(inter / np.count_nonzero(p | g))
        assert row["precision"] == pytest.approx(inter / p.sum())
        assert row["recall"] == pytest.approx(inter / g.sum())
        expected = monai_surface(p, g, spacing, tau)
        for key in ("hd95", "assd", "nsd"):
            assert row[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-6)


def test_lesion_columns_and_absent_class() -> None:
    ref = np.zeros((20, 20, 20), dtype=np.int32)
    ref[2:5, 2:5, 2:5] = 1
    ref[10:13, 10:13, 10:13] = 1
    pred = np.zeros_like(ref)
    pred[3:6, 3:6, 3:6] = 1
    pred[15:17, 2:4, 2:4] = 1  # stray
    pred[0:2, 18:20, 18:20] = 3  # class 3 predicted but absent from the reference
    rows = case_metrics(torch.from_numpy(pred), ref, [1, 3])
    one, three = rows
    assert (one["lesion_tp"], one["lesion_fp"], one["lesion_fn"], one["lesion_f1"]) == (
        1,
        1,
        1,
        0.5,
    )
    assert (three["dice"], three["nsd"], three["lesion_fp"], three["lesion_f1"]) == (
        0.0,
        0.0,
        1,
        0.0,
    )
    assert three["hd95"] == pytest.approx(np.sqrt(3 * 20**2))  # diagonal penalty
    assert class_values(pred) == [1, 3]


def test_brats_protocol_adds_lesion_scores() -> None:
    ref = np.zeros((16, 16, 16), dtype=np.uint8)
    ref[2:8, 2:8, 2:8] = 1
    rows = case_metrics(ref, ref, [1], lesion_protocol="brats2023")
    assert rows[0]["lesion_dice"] == 1.0 and rows[0]["lesion_hd95"] == 0.0
    assert rows[0]["lesion_tp"] == 1 and rows[0]["dice"] == 1.0
