"""Dice / IoU / precision / recall: MONAI DiceMetric, hand counts, empty policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import MeanIoU

from segbalance.evaluate import dice, iou, overlap_metrics, precision, recall

from ._shapes import blob_pair, monai_dice


@pytest.mark.parametrize(
    ("shape", "seed"), [((30, 28, 26), 0), ((30, 28, 26), 1), ((64, 48), 2), ((50, 50), 3)]
)
def test_dice_and_iou_match_monai(shape, seed) -> None:
    pred, ref = blob_pair(shape, 3, seed, jitter=2.0)
    assert dice(pred, ref) == pytest.approx(monai_dice(pred, ref), rel=1e-6)
    miou = MeanIoU(include_background=True, reduction="none", ignore_empty=False)
    expected_iou = miou(
        torch.from_numpy(pred)[None, None].float(), torch.from_numpy(ref)[None, None].float()
    )
    assert iou(pred, ref) == pytest.approx(expected_iou.item(), rel=1e-6)


def test_hand_counts() -> None:
    # |P| = 6, |G| = 4, |P∩G| = 3
    pred = np.zeros((4, 5), dtype=bool)
    ref = np.zeros((4, 5), dtype=bool)
    pred[0, :3] = True
    pred[1, :3] = True
    ref[0, 1:4] = True
    ref[1, 0] = True
    assert dice(pred, ref) == pytest.approx(2 * 3 / 10)
    assert iou(pred, ref) == pytest.approx(3 / 7)
    assert precision(pred, ref) == pytest.approx(3 / 6)
    assert recall(pred, ref) == pytest.approx(3 / 4)
    assert overlap_metrics(pred, ref) == pytest.approx(
        {"dice": 0.6, "iou": 3 / 7, "precision": 0.5, "recall": 0.75}
    )
    # numeric {0, 1} inputs and torch tensors give the same numbers
    assert dice(pred.astype(np.float32), ref.astype(np.uint8)) == pytest.approx(0.6)
    assert recall(torch.from_numpy(pred), torch.from_numpy(ref).int()) == pytest.approx(0.75)


def test_empty_policies() -> None:
    empty = np.zeros((6, 6, 6), dtype=bool)
    blob = empty.copy()
    blob[2:4, 2:4, 2:4] = True
    assert overlap_metrics(empty, empty) == {
        "dice": 1.0,
        "iou": 1.0,
        "precision": 1.0,
        "recall": 1.0,
    }
    # prediction empty, reference not: nothing found
    assert overlap_metrics(empty, blob) == {
        "dice": 0.0,
        "iou": 0.0,
        "precision": 0.0,
        "recall": 0.0,
    }
    # reference empty, prediction not: everything is a false positive
    assert overlap_metrics(blob, empty) == {
        "dice": 0.0,
        "iou": 0.0,
        "precision": 0.0,
        "recall": 0.0,
    }
    # MONAI agrees where it defines the value (ignore_empty=False)
    assert dice(empty, blob) == monai_dice(empty, blob)
    assert dice(empty, empty) == monai_dice(empty, empty)
