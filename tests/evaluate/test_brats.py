"""BraTS-2023 lesion-wise protocol against a loop-by-loop port of the reference ``eval.py``."""

from __future__ import annotations

import warnings

import cc3d
import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance
from scipy import ndimage

from segbalance.evaluate import brats_lesion_wise, lesion_metrics


def _monai_hd95(pred: np.ndarray, ref: np.ndarray, spacing) -> float:
    if not pred.any():
        return np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None].float(),
            torch.from_numpy(ref)[None, None].float(),
            include_background=True,
            percentile=95,
            spacing=list(spacing),
        )
    return out.item()


def slow_brats(pred, gt, spacing, dil, threshold):
    """rachitsaluja/BraTS-2023-Metrics get_LesionWiseScores + get_LesionWiseResults, with
    full-volume dilations and loops; lesion HD95 from MONAI (our HD95 convention)."""
    struct = ndimage.generate_binary_structure(3, 2)
    voxel = float(np.prod(spacing))
    gt_cc = cc3d.connected_components(gt.astype(np.uint8), connectivity=26)
    pred_cc = cc3d.connected_components(pred.astype(np.uint8), connectivity=26)
    gt_dil = ndimage.binary_dilation(gt, structure=struct, iterations=dil)
    gt_dil_cc = cc3d.connected_components(gt_dil.astype(np.uint8), connectivity=26)
    combined = np.zeros_like(gt_dil_cc)
    for comp in range(1, gt_dil_cc.max() + 1):
        tmp = (gt_dil_cc == comp) * gt_cc
        combined[tmp > 0] = comp
    tp_pred, rows = [], []
    for comp in range(1, combined.max() + 1):
        lesion = combined == comp
        lesion_dil = ndimage.binary_dilation(lesion, structure=struct, iterations=dil)
        hits = np.unique(pred_cc * lesion_dil)
        hits = hits[hits != 0]
        tp_pred.extend(hits.tolist())
        union = np.isin(pred_cc, hits)
        dice = 2 * np.sum(union & lesion) / (union.sum() + lesion.sum())
        hd = _monai_hd95(union, lesion, spacing)
        rows.append((len(hits), lesion.sum() * voxel, dice, 374.0 if np.isinf(hd) else hd))
    fp = np.unique(pred_cc[np.isin(pred_cc, [*tp_pred, 0], invert=True)])
    kept = [r for r in rows if r[1] > threshold]
    n = len(kept) + len(fp)
    score_dice = 1.0 if n == 0 else sum(r[2] for r in kept) / n
    score_hd = 0.0 if n == 0 else (sum(r[3] for r in kept) + 374.0 * len(fp)) / n
    tp = sum(1 for r in kept if r[0] > 0)
    return {
        "lesion_tp": tp,
        "lesion_fp": len(fp),
        "lesion_fn": len(kept) - tp,
        "lesion_dice": score_dice,
        "lesion_hd95": score_hd,
        "n_gt_lesions": len(rows),
    }


def _scene(seed: int, shape=(40, 36, 32)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = np.zeros(shape, dtype=bool)
    pred = np.zeros(shape, dtype=bool)
    for _ in range(9):
        c = [int(rng.integers(3, s - 3)) for s in shape]
        r = rng.integers(0, 4, size=3)
        box = tuple(slice(max(ci - ri, 0), ci + ri + 1) for ci, ri in zip(c, r, strict=True))
        gt[box] = True
        if rng.random() < 0.6:  # detected, imperfectly
            shift = tuple(
                slice(max(b.start + int(rng.integers(-1, 2)), 0), b.stop + int(rng.integers(-1, 2)))
                for b in box
            )
            pred[shift] = True
    for _ in range(3):  # stray predictions, some near a lesion (within the dilation)
        c = [int(rng.integers(2, s - 2)) for s in shape]
        pred[tuple(slice(ci, ci + 2) for ci in c)] = True
    return pred, gt


@pytest.mark.parametrize(
    ("seed", "dil", "threshold", "spacing"),
    [
        (0, 3, 50.0, (1.0, 1.0, 1.0)),
        (1, 1, 2.0, (1.0, 1.0, 1.0)),
        (2, 3, 10.0, (1.2, 0.8, 1.5)),
        (3, 1, 20.0, (1.0, 1.0, 1.0)),
    ],
)
def test_matches_loop_port_of_reference(seed, dil, threshold, spacing) -> None:
    pred, gt = _scene(seed)
    expected = slow_brats(pred, gt, spacing, dil, threshold)
    got = brats_lesion_wise(pred, gt, spacing, dil=dil, size_threshold=threshold)
    for key in ("lesion_tp", "lesion_fp", "lesion_fn", "n_gt_lesions"):
        assert got[key] == expected[key], key
    assert got["lesion_dice"] == pytest.approx(expected["lesion_dice"], rel=1e-12)
    assert got["lesion_hd95"] == pytest.approx(expected["lesion_hd95"], rel=1e-6)
    same = lesion_metrics(
        pred, gt, spacing, lesion_protocol="brats2023", dil=dil, size_threshold=threshold
    )
    assert same["lesion_dice"] == got["lesion_dice"]


def test_hand_example_merging_size_filter_and_false_positive() -> None:
    gt = np.zeros((30, 30, 30), dtype=bool)
    gt[5:9, 5:9, 5:9] = True  # 64 voxels
    gt[5:9, 5:9, 12:16] = True  # 64 voxels, 3 voxels apart: dilations (dil=3) touch -> merged
    gt[20:22, 20:22, 20:22] = True  # 8 voxels: dropped at threshold 50
    pred = np.zeros_like(gt)
    pred[5:9, 5:9, 5:9] = True  # exactly the first part of the merged lesion
    pred[20, 20, 20] = True  # matches the small lesion: neither TP (dropped) nor FP
    pred[27:29, 2:4, 2:4] = True  # stray: FP
    out = brats_lesion_wise(pred, gt, dil=3, size_threshold=50)
    assert out["n_gt_lesions"] == 2
    assert (out["lesion_tp"], out["lesion_fn"], out["lesion_fp"]) == (1, 0, 1)
    merged = out["lesions"][0]
    assert merged["size_voxels"] == 128 and merged["dice"] == pytest.approx(2 * 64 / (128 + 64))
    assert out["lesions"][1]["kept"] is False
    # score = lesion Dice / (kept lesions + FP); HD95 adds 374 per FP
    assert out["lesion_dice"] == pytest.approx((128 / 192) / 2)
    assert out["lesion_hd95"] == pytest.approx((merged["hd95"] + 374.0) / 2)
    # with dil=1 the two parts stay separate: one matched, one missed
    split = brats_lesion_wise(pred, gt, dil=1, size_threshold=50)
    assert (split["lesion_tp"], split["lesion_fn"], split["lesion_fp"]) == (1, 1, 1)
    assert split["lesion_dice"] == pytest.approx((1.0 + 0.0) / 3)
    assert split["lesion_hd95"] == pytest.approx((0.0 + 374.0 + 374.0) / 3)


def test_nothing_to_score() -> None:
    empty = np.zeros((10, 10, 10), dtype=bool)
    out = brats_lesion_wise(empty, empty)
    assert (out["lesion_dice"], out["lesion_hd95"], out["lesion_f1"]) == (1.0, 0.0, 1.0)
    tiny = empty.copy()
    tiny[3, 3, 3] = True  # only a lesion below the size threshold and its match
    out = brats_lesion_wise(tiny, tiny)
    assert (out["lesion_dice"], out["lesion_hd95"], out["lesion_tp"]) == (1.0, 0.0, 0)
