"""HD95, NSD and ASSD against DeepMind's ``surface-distance`` (dev extra), with tolerances.

DeepMind weights surface elements by their area (surfels between voxels), segbalance and
MONAI count boundary voxels (METHODS §10), so the two agree only up to the discretisation:
we state the tolerance (one voxel diagonal for HD95, one voxel for ASSD; for NSD our value
at tolerance t lies between DeepMind's at t - d and t + d, d the voxel diagonal, up to 0.02)
and check it on smooth random ellipsoids with anisotropic spacing.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segbalance.evaluate import assd, hd95, nsd

sd = pytest.importorskip("surface_distance")


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
    return inside <= 1.0


@settings(max_examples=10, deadline=None)
@given(
    centre=st.tuples(*[st.floats(14, 18)] * 3),
    radii_ref=st.tuples(*[st.floats(5, 9)] * 3),
    scale=st.floats(0.8, 1.2),
    shift=st.tuples(*[st.integers(-2, 2)] * 3),
    spacing=st.tuples(*[st.sampled_from([0.8, 1.0, 1.5, 2.5])] * 3),
)
def test_surface_metrics_agree_with_deepmind_within_discretisation(
    centre, radii_ref, scale, shift, spacing
) -> None:
    shape = (32, 32, 32)
    ref = _ellipsoid(shape, centre, radii_ref)
    pred = _ellipsoid(
        shape, [c + s for c, s in zip(centre, shift, strict=True)], [r * scale for r in radii_ref]
    )
    dists = sd.compute_surface_distances(ref, pred, spacing)
    diagonal = float(np.linalg.norm(spacing))
    assert hd95(pred, ref, spacing) == pytest.approx(
        sd.compute_robust_hausdorff(dists, 95), abs=diagonal
    )
    tau = 2.0 * max(spacing)
    ours = nsd(pred, ref, spacing, tolerance=tau)
    low = sd.compute_surface_dice_at_tolerance(dists, max(tau - diagonal, 0.0))
    high = sd.compute_surface_dice_at_tolerance(dists, tau + diagonal)
    assert low - 0.02 <= ours <= high + 0.02
    to_pred, to_ref = sd.compute_average_surface_distance(dists)
    assert assd(pred, ref, spacing) == pytest.approx((to_pred + to_ref) / 2, abs=max(spacing))


def test_identical_masks_agree_exactly() -> None:
    ref = _ellipsoid((24, 24, 24), (12, 12, 12), (6, 4, 5))
    dists = sd.compute_surface_distances(ref, ref, (1.0, 1.0, 2.0))
    assert hd95(ref, ref, (1.0, 1.0, 2.0)) == sd.compute_robust_hausdorff(dists, 95) == 0.0
    assert nsd(ref, ref, (1.0, 1.0, 2.0)) == sd.compute_surface_dice_at_tolerance(dists, 2.0) == 1.0
