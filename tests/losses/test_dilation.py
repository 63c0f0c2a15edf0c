"""Fast ball dilation (box decomposition, shift-ORs) against scipy and the dense convolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from segbalance.losses.dilation import ball_kernel, dilate, dilate_by_convolution

from . import _numpy_ref as ref


@pytest.mark.parametrize(
    ("radius", "ndim"), [(1.0, 3), (2.0, 3), (3.0, 3), (5.0, 3), (1.5, 2), (3.0, 2), (4.0, 2)]
)
def test_ball_dilation_equals_scipy_and_convolution(radius: float, ndim: int) -> None:
    rng = np.random.default_rng(int(radius * 10) + ndim)
    shape = (3, 13, 11, 9) if ndim == 3 else (3, 17, 15)
    masks = rng.random(shape) < np.array([0.002, 0.02, 0.2]).reshape(3, *[1] * ndim)
    kernel = ball_kernel([radius] * ndim)
    # the kernel is the METHODS §6 ball (sizes 7, 33, 123, 515 for r = 1, 2, 3, 5 in 3D)
    np.testing.assert_array_equal(kernel.numpy(), ref.ball(radius, ndim))
    got = dilate(torch.from_numpy(masks), kernel).numpy()
    conv = dilate_by_convolution(torch.from_numpy(masks), kernel).numpy()
    expected = np.stack([ndimage.binary_dilation(m, structure=kernel.numpy()) for m in masks])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(conv, expected)


@pytest.mark.parametrize("spacing", [(1.0, 0.7, 2.5), (0.8, 0.8, 3.0), (2.0, 1.0)])
def test_ellipsoid_dilation_equals_scipy(spacing) -> None:
    rng = np.random.default_rng(len(spacing))
    kernel = ball_kernel([3.2 / s for s in spacing])
    shape = (2, 12, 10, 9)[: len(spacing) + 1]
    masks = rng.random(shape) < 0.01
    masks.reshape(2, -1)[:, 0] = True  # corner voxel: the zero border is exercised
    got = dilate(torch.from_numpy(masks), kernel).numpy()
    expected = np.stack([ndimage.binary_dilation(m, structure=kernel.numpy()) for m in masks])
    np.testing.assert_array_equal(got, expected)


def test_non_convex_and_asymmetric_kernels() -> None:
    """A ring (mirror-symmetric, not convex) goes through the sections; an asymmetric
    kernel through the convolution; both dilate exactly."""
    ring = torch.ones(5, 5, dtype=torch.bool)
    ring[1:4, 1:4] = False
    ring[2, 2] = True
    rng = np.random.default_rng(0)
    masks = rng.random((2, 12, 12)) < 0.05
    got = dilate(torch.from_numpy(masks), ring).numpy()
    expected = np.stack([ndimage.binary_dilation(m, structure=ring.numpy()) for m in masks])
    np.testing.assert_array_equal(got, expected)
    corner = torch.zeros(3, 3, 3, dtype=torch.bool)
    corner[1, 1, 1] = corner[2, 2, 2] = True
    masks3 = torch.from_numpy(rng.random((2, 6, 7, 5)) < 0.1)
    np.testing.assert_array_equal(
        dilate(masks3, corner).numpy(), dilate_by_convolution(masks3, corner).numpy()
    )
