"""Input validation: one helper, ValueError "Expected X but got Y"."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbalance.evaluate import (
    case_metrics,
    detection_rate_by_size,
    dice,
    hd95,
    lesion_metrics,
    nsd,
    surface_metrics,
)

A = np.zeros((5, 6, 7), dtype=bool)
A[1:3, 1:3, 1:3] = True


@pytest.mark.parametrize("metric", [dice, hd95, nsd, lesion_metrics, surface_metrics])
def test_shape_mismatch(metric) -> None:
    with pytest.raises(
        ValueError, match=r"Expected ref to have the shape of pred \(5, 6, 7\) but got \(5, 6, 6\)"
    ):
        metric(A, A[:, :, :6])


@pytest.mark.parametrize("bad", [A.astype(np.int64) * 2, A * 0.5, np.full((5, 6, 7), -1)])
def test_non_binary_values(bad) -> None:
    with pytest.raises(ValueError, match=r"Expected pred to be a binary mask .* but got the value"):
        dice(bad, A)


def test_dimensions_and_dtype() -> None:
    with pytest.raises(ValueError, match="Expected pred to be a 2D or 3D array but got shape"):
        dice(np.zeros(5, dtype=bool), np.zeros(5, dtype=bool))
    with pytest.raises(ValueError, match="Expected ref to be a 2D or 3D array"):
        dice(A, A[None])
    with pytest.raises(ValueError, match="Expected pred to be boolean or numeric but got dtype"):
        dice(np.full((2, 2), "a"), np.zeros((2, 2), dtype=bool))


@pytest.mark.parametrize("spacing", [(1.0, 2.0), (1.0, 1.0, 1.0, 1.0), [[1.0, 1.0, 1.0]]])
def test_wrong_spacing_length(spacing) -> None:
    with pytest.raises(ValueError, match="Expected spacing to have 3 values"):
        hd95(A, A, spacing)


@pytest.mark.parametrize("spacing", [(1.0, 0.0, 1.0), (1.0, -1.0, 1.0), (1.0, float("nan"), 1.0)])
def test_non_positive_spacing(spacing) -> None:
    with pytest.raises(ValueError, match="Expected spacing to be finite and > 0"):
        nsd(A, A, spacing)


def test_spacing_forms_accepted() -> None:
    shifted = np.roll(A, 1, axis=0)
    iso = hd95(shifted, A, 2.0)
    assert iso == hd95(shifted, A, (2.0, 2.0, 2.0)) == hd95(shifted, A, np.array([2.0, 2.0, 2.0]))
    assert iso == hd95(shifted, A, torch.tensor([2.0, 2.0, 2.0]))


def test_options_are_checked() -> None:
    with pytest.raises(
        ValueError,
        match=r"Expected hd95_mode to be one of \['max', 'union'\] but got 'unoin'.*did you mean 'union'",
    ):
        hd95(A, A, hd95_mode="unoin")
    with pytest.raises(ValueError, match="Expected tolerance to be finite and >= 0 but got -1"):
        nsd(A, A, tolerance=-1)
    with pytest.raises(ValueError, match="Expected empty_penalty to be one of"):
        hd95(A, np.zeros_like(A), empty_penalty="diag")
    with pytest.raises(ValueError, match="Expected match to be one of"):
        lesion_metrics(A, A, match="overlaps")
    with pytest.raises(ValueError, match="Expected iou_threshold in"):
        lesion_metrics(A, A, match="iou", iou_threshold=1.5)
    with pytest.raises(ValueError, match="Expected lesion_protocol to be one of"):
        lesion_metrics(A, A, lesion_protocol="brats")
    with pytest.raises(ValueError, match="Expected dil to be an integer >= 0"):
        lesion_metrics(A, A, lesion_protocol="brats2023", dil=-1)
    with pytest.raises(ValueError, match="Expected unit to be one of"):
        detection_rate_by_size([], unit="mm")
    with pytest.raises(ValueError, match="Expected at least two strictly increasing bin edges"):
        detection_rate_by_size([], bins=(10, 5))


def test_label_maps_checked() -> None:
    labels = A.astype(np.int16)
    with pytest.raises(ValueError, match="Expected ref_labels to have the shape of pred_labels"):
        case_metrics(labels, labels[:4], [1])
    with pytest.raises(ValueError, match="Expected pred_labels to hold integer labels"):
        case_metrics(labels * 0.5, labels, [1])
    with pytest.raises(ValueError, match="Expected tolerance to have an entry for class 2"):
        case_metrics(labels, labels, [1, 2], tolerance={1: 2.0})
