"""Dilated balanced CE (METHODS §6): ball dilation, region rule, R = 0 is balanced CE."""

from __future__ import annotations

import numpy as np
import pytest

from segbalance.losses import build_loss

from . import _numpy_ref as ref
from .conftest import IGNORE, random_case, value

RTOL = 1e-5


@pytest.mark.parametrize("ignore", [None, IGNORE])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("spatial", [(9, 11), (6, 7, 5)])
def test_radius_zero_is_balanced_ce(ignore, c, spatial) -> None:
    z, t = random_case(301, n_classes=c, spatial=spatial, fg=0.1, ignore_index=ignore)
    got = value(build_loss("dbce", radius=0, ignore_index=ignore), z, t)
    bal = value(build_loss("balanced_ce", ignore_index=ignore), z, t)
    assert got == pytest.approx(bal, rel=1e-9)
    assert got == pytest.approx(ref.balanced_ce(z, t, ignore_index=ignore), rel=RTOL)


@pytest.mark.parametrize("radius", [1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("c", [1, 3])
def test_sparse_foreground_against_reference(radius: float, c: int) -> None:
    """Sparse lesions in a larger volume so that the background region stays non-empty."""
    z, t = random_case(303, n_classes=c, spatial=(10, 11, 9), fg=0.01)
    got = value(build_loss("dbce", radius=radius), z, t)
    assert got == pytest.approx(ref.dbce(z, t, radius=radius), rel=RTOL)
    assert got != pytest.approx(ref.balanced_ce(z, t), rel=1e-3)


def test_overlap_goes_to_smallest_dilated_class() -> None:
    """§6 step 2, by hand: 1 x 9 image, class 1 at x=2, class 2 at x=5,6, disk R = 2.
    D1 = [0, 4] (5 px), D2 = [3, 8] (6 px); background pixels 3, 4 lie in both -> class 1
    (smaller D); regions {0..4} and {5..8}, no background region left."""
    rng = np.random.default_rng(7)
    z = rng.normal(0, 2, size=(1, 3, 1, 9))
    t = np.array([[[0, 0, 1, 0, 0, 2, 2, 0, 0]]])
    ell = ref.voxel_ce(z, t)[0, 0]
    expected = 0.5 * (ell[0:5].mean() + ell[5:9].mean())
    assert value(build_loss("dbce", radius=2), z, t) == pytest.approx(expected, rel=1e-9)


def test_own_label_wins_inside_another_dilation() -> None:
    """A class-2 pixel inside D1 stays in region 2 (its own label is among the covering)."""
    rng = np.random.default_rng(9)
    z = rng.normal(0, 2, size=(1, 3, 1, 7))
    t = np.array([[[1, 2, 0, 0, 0, 0, 0]]])
    # R = 1: D1 = {0, 1}, D2 = {0, 1, 2}; pixel 0 -> 1, pixel 1 -> 2, pixel 2 -> 2 (only D2)
    ell = ref.voxel_ce(z, t)[0, 0]
    expected = (ell[0] + ell[1:3].mean() + ell[3:].mean()) / 3
    assert value(build_loss("dbce", radius=1), z, t) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("c", [1, 3])
def test_empty_and_full_foreground_are_plain_ce(c: int) -> None:
    z, _ = random_case(307, n_classes=c, spatial=(6, 7, 5))
    for t in (np.zeros((2, 6, 7, 5), np.int64), np.full((2, 6, 7, 5), max(1, c - 1))):
        assert value(build_loss("dbce"), z, t) == pytest.approx(ref.ce(z, t), rel=RTOL)


def test_dilation_covering_everything_is_plain_ce() -> None:
    z, t = random_case(309, n_classes=1, spatial=(5, 5, 5), fg=0.3)
    assert value(build_loss("dbce", radius=5), z, t) == pytest.approx(ref.ce(z, t), rel=RTOL)


def test_batch_is_mean_of_samples() -> None:
    z, t = random_case(311, n_classes=1, spatial=(8, 9, 7), fg=0.02)
    loss = build_loss("dbce", radius=2)
    both = value(loss, z, t)
    each = [value(loss, z[b : b + 1], t[b : b + 1]) for b in range(2)]
    assert both == pytest.approx(np.mean(each), rel=1e-9)


@pytest.mark.parametrize(
    ("radius_mm", "spacing", "radius"),
    [(2.0, (1.0, 1.0, 1.0), 2.0), (2.0, (2.0, 2.0, 2.0), 1.0), (3.0, (1.5, 1.5, 1.5), 2.0)],
)
def test_radius_mm_isotropic(radius_mm, spacing, radius) -> None:
    z, t = random_case(313, n_classes=1, spatial=(10, 11, 9), fg=0.01)
    got = value(build_loss("dbce", radius_mm=radius_mm, spacing=spacing), z, t)
    assert got == pytest.approx(value(build_loss("dbce", radius=radius), z, t), rel=1e-9)


def test_radius_mm_anisotropic_ellipsoid() -> None:
    """§6 Assumed: spacing-aware ellipsoid {||u * spacing|| <= radius_mm}."""
    z, t = random_case(317, n_classes=1, spatial=(10, 11, 9), fg=0.01)
    got = value(build_loss("dbce", radius_mm=2.5, spacing=(2.5, 1.0, 1.0)), z, t)
    expected = ref.dbce(z, t, radius_mm=2.5, spacing=(2.5, 1.0, 1.0))
    assert got == pytest.approx(expected, rel=RTOL)
    assert got != pytest.approx(ref.dbce(z, t, radius=2.5), rel=1e-4)


def test_radius_mm_2d() -> None:
    z, t = random_case(319, n_classes=3, spatial=(15, 17), fg=0.02)
    got = value(build_loss("dbce", radius_mm=3.0, spacing=(1.0, 1.5)), z, t)
    assert got == pytest.approx(ref.dbce(z, t, radius_mm=3.0, spacing=(1.0, 1.5)), rel=RTOL)
    iso = value(build_loss("dbce", radius_mm=4.0, spacing=(2.0, 2.0)), z, t)
    assert iso == pytest.approx(value(build_loss("dbce", radius=2), z, t), rel=1e-9)
