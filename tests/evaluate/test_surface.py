"""HD95 / ASSD / NSD against MONAI 1.6 (exact up to float32 rounding) and by-hand geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics.utils import get_mask_edges
from scipy import ndimage

from segbalance.evaluate import (
    assd,
    hd95,
    hd_percentile,
    nsd,
    surface_distances,
    surface_metrics,
    surface_voxels,
)

from ._shapes import blob_pair, monai_surface

# MONAI returns float32; 1e-6 relative covers its rounding of float64 distances.
RTOL = 1e-6

CASES = [
    # (shape, n_blobs, spacing, tolerance, seed)
    ((48, 40, 36), 3, None, 2.0, 0),
    ((48, 40, 36), 4, (1.0, 0.8, 2.0), 2.0, 1),
    ((40, 44, 24), 2, (0.7, 0.9, 3.1), 1.5, 2),
    ((32, 32, 32), 5, (2.0, 2.0, 2.0), 3.0, 3),
    ((96, 80), 4, None, 2.0, 4),
    ((96, 80), 3, (0.7, 1.3), 2.0, 5),
    ((64, 64), 6, (1.1, 0.45), 1.0, 6),
]


@pytest.mark.parametrize(("shape", "n_blobs", "spacing", "tolerance", "seed"), CASES)
def test_matches_monai_on_random_blobs(shape, n_blobs, spacing, tolerance, seed) -> None:
    pred, ref = blob_pair(shape, n_blobs, seed, jitter=1.5)
    assert pred.any() and ref.any() and not np.array_equal(pred, ref)
    expected = monai_surface(pred, ref, spacing, tolerance)
    got = surface_metrics(pred, ref, spacing, tolerance)
    assert got["hd95"] > 0
    for key in ("hd95", "assd", "nsd"):
        assert got[key] == pytest.approx(expected[key], rel=RTOL, abs=1e-6), key


def _cube(shape, lo, hi) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return mask


HAND_MADE = [
    # shifted cube
    (_cube((20, 20, 20), (4, 4, 4), (12, 12, 12)), _cube((20, 20, 20), (6, 5, 4), (14, 13, 12))),
    # cube touching the image border vs interior cube (crop at the border must stay exact)
    (_cube((16, 18, 20), (0, 0, 0), (7, 9, 20)), _cube((16, 18, 20), (3, 2, 5), (10, 12, 15))),
    # single voxel far from a thin plate
    (_cube((24, 24, 24), (20, 3, 3), (21, 4, 4)), _cube((24, 24, 24), (2, 2, 2), (3, 22, 22))),
    # two far-apart pieces vs one
    (
        _cube((30, 12, 12), (1, 1, 1), (4, 4, 4)) | _cube((30, 12, 12), (25, 7, 7), (29, 11, 11)),
        _cube((30, 12, 12), (2, 2, 2), (5, 5, 5)),
    ),
    # 2D: L-shape vs square touching the border
    (
        _cube((20, 30), (0, 0), (10, 4)) | _cube((20, 30), (6, 0), (10, 15)),
        _cube((20, 30), (3, 3), (12, 12)),
    ),
]


@pytest.mark.parametrize("index", range(len(HAND_MADE)))
@pytest.mark.parametrize("spacing", [None, "aniso"])
def test_matches_monai_on_hand_made_shapes(index, spacing) -> None:
    pred, ref = HAND_MADE[index]
    sp = None if spacing is None else (0.9, 1.7, 2.3)[: pred.ndim]
    expected = monai_surface(pred, ref, sp, 2.5)
    got = surface_metrics(pred, ref, sp, 2.5)
    for key in ("hd95", "assd", "nsd"):
        assert got[key] == pytest.approx(expected[key], rel=RTOL, abs=1e-6), key
    # the reverse direction too (MONAI's definition is symmetric as well)
    expected_rev = monai_surface(ref, pred, sp, 2.5)
    assert hd95(ref, pred, sp) == pytest.approx(expected_rev["hd95"], rel=RTOL, abs=1e-6)


def test_known_distances_of_shifted_cube() -> None:
    # A cube shifted by 3 voxels along axis 0 at 2 mm: the far faces are 6 mm apart.
    ref = _cube((20, 20, 20), (5, 5, 5), (11, 11, 11))
    pred = _cube((20, 20, 20), (8, 5, 5), (14, 11, 11))
    d = surface_distances(pred, ref, (2.0, 1.0, 1.0))
    assert d.pred_to_ref.max() == pytest.approx(6.0)
    assert d.ref_to_pred.max() == pytest.approx(6.0)
    # surface voxels of a 6^3 cube: 6^3 - 4^3
    assert d.pred_to_ref.size == d.ref_to_pred.size == 216 - 64
    assert nsd(pred, ref, (2.0, 1.0, 1.0), tolerance=0.0) == pytest.approx(
        np.count_nonzero(d.pred_to_ref == 0) * 2 / (2 * 152)
    )


def test_surface_voxels_equal_scipy_erosion_and_monai_edges() -> None:
    pred, ref = blob_pair((30, 34, 28), 4, seed=7)
    pred[0, :5, :5] = True  # touches the image border
    expected = pred & ~ndimage.binary_erosion(pred)
    np.testing.assert_array_equal(surface_voxels(pred), expected)
    edges_pred, edges_ref = get_mask_edges(pred, ref, crop=False, always_return_as_numpy=True)
    np.testing.assert_array_equal(surface_voxels(pred), edges_pred)
    np.testing.assert_array_equal(surface_voxels(ref), edges_ref)


def _full_volume_distances(pred, ref, spacing):
    # Independent reference: dense EDT over the whole image (medpy's way).
    sp = np.ones(pred.ndim) if spacing is None else np.asarray(spacing)
    surf_p = pred & ~ndimage.binary_erosion(pred)
    surf_r = ref & ~ndimage.binary_erosion(ref)
    to_ref = ndimage.distance_transform_edt(~surf_r, sampling=sp)[surf_p]
    to_pred = ndimage.distance_transform_edt(~surf_p, sampling=sp)[surf_r]
    return to_ref, to_pred


@pytest.mark.parametrize("spacing", [None, (1.0, 0.6, 2.5)])
def test_cropped_distances_equal_full_volume_edt(spacing) -> None:
    pred, ref = blob_pair((40, 36, 30), 3, seed=11, jitter=2.0)
    to_ref, to_pred = _full_volume_distances(pred, ref, spacing)
    d = surface_distances(pred, ref, spacing)
    np.testing.assert_allclose(np.sort(d.pred_to_ref), np.sort(to_ref), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sort(d.ref_to_pred), np.sort(to_pred), rtol=1e-12, atol=1e-12)
    # union mode = medpy's hd95: percentile of both sets together
    union = np.percentile(np.concatenate([to_ref, to_pred]), 95)
    assert hd95(pred, ref, spacing, hd95_mode="union") == pytest.approx(union, rel=1e-12)
    assert assd(pred, ref, spacing) == pytest.approx(
        np.concatenate([to_ref, to_pred]).mean(), rel=1e-12
    )


def test_hd95_worked_example_of_methods() -> None:
    # METHODS §10: d_P->G = 18 zeros + two 10 mm, d_G->P = 20 zeros
    p_to_g = [0.0] * 18 + [10.0, 10.0]
    g_to_p = [0.0] * 20
    assert hd_percentile(p_to_g, g_to_p) == pytest.approx(10.0)
    assert hd_percentile(p_to_g, g_to_p, "union") == pytest.approx(0.5)
    assert hd_percentile(g_to_p, p_to_g, "max") == pytest.approx(10.0)


def test_hd95_worked_example_realised_on_masks() -> None:
    # Same structure on real masks: a stray voxel far away moves the default HD95,
    # the union percentile barely.
    ref = _cube((40, 40, 40), (5, 5, 5), (15, 15, 15))
    pred = ref.copy()
    pred[35, 35, 35] = True
    d = surface_distances(pred, ref)
    stray = math.sqrt(3 * 21**2)
    assert sorted(d.pred_to_ref)[-1] == pytest.approx(stray)
    assert np.count_nonzero(d.pred_to_ref) == 1 and not d.ref_to_pred.any()
    n = d.pred_to_ref.size
    expected_max = np.percentile(np.r_[np.zeros(n - 1), stray], 95)
    assert hd95(pred, ref) == pytest.approx(expected_max)
    assert hd95(pred, ref, hd95_mode="union") == pytest.approx(
        np.percentile(np.r_[np.zeros(2 * n - 2), stray], 95)
    )


def test_empty_policies() -> None:
    empty = np.zeros((10, 20, 30), dtype=bool)
    blob = _cube((10, 20, 30), (2, 2, 2), (5, 6, 7))
    spacing = (1.0, 2.0, 3.0)
    diagonal = math.sqrt(10**2 + 40**2 + 90**2)
    assert surface_metrics(empty, empty, spacing) == {"hd95": 0.0, "assd": 0.0, "nsd": 1.0}
    for pred, ref in ((empty, blob), (blob, empty)):
        assert hd95(pred, ref, spacing) == pytest.approx(diagonal)
        assert assd(pred, ref, spacing) == pytest.approx(diagonal)
        assert hd95(pred, ref, spacing, empty_penalty=374) == 374.0
        assert assd(pred, ref, spacing, empty_penalty=374.0) == 374.0
        assert nsd(pred, ref, spacing) == 0.0
    assert hd95(empty[0], blob[3], (1.0, 1.0)) == pytest.approx(math.sqrt(20**2 + 30**2))


def test_identical_masks_and_torch_input() -> None:
    pred, ref = blob_pair((24, 24, 24), 3, seed=3)
    assert surface_metrics(ref, ref, (1.0, 2.0, 0.5)) == {"hd95": 0.0, "assd": 0.0, "nsd": 1.0}
    expected = monai_surface(pred, ref, (1.0, 2.0, 0.5), 2.0)
    got = surface_metrics(torch.from_numpy(pred), torch.from_numpy(ref).long(), (1.0, 2.0, 0.5))
    assert got["hd95"] == pytest.approx(expected["hd95"], rel=RTOL)
    assert got["nsd"] == pytest.approx(expected["nsd"], rel=RTOL)


def test_nsd_tolerance_is_inclusive_and_monotone() -> None:
    ref = _cube((20, 20, 20), (5, 5, 5), (11, 11, 11))
    pred = _cube((20, 20, 20), (7, 5, 5), (13, 11, 11))  # 2 voxels shift at 1 mm
    values = [nsd(pred, ref, tolerance=t) for t in (0.0, 1.0, 1.99, 2.0, 3.0)]
    assert values == sorted(values)
    assert values[3] == 1.0 and values[2] < 1.0  # the far faces are exactly 2 mm away
