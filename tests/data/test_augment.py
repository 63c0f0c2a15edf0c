"""Augmentations equal MONAI's transforms with the same parameters; affine equals scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import AdjustContrast, Flip, Rotate90, ScaleIntensity, ShiftIntensity
from scipy import ndimage

from segbalance.data.augment import (
    AugmentSettings,
    IntensityDraw,
    SpatialDraw,
    affine_matrix,
    apply_intensity,
    crop_with_padding,
    draw_spatial,
    flip_rotate,
    sample_affine,
)


def _image(seed: int = 0, shape=(2, 8, 10, 8)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _monai(transform, x: np.ndarray) -> np.ndarray:
    return np.asarray(transform(torch.from_numpy(x.copy())))


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 2), (0, 1, 2)])
def test_flips_equal_monai_flip(axes: tuple[int, ...]) -> None:
    x = _image()
    ours = flip_rotate(x, SpatialDraw(None, axes, None))
    assert np.array_equal(ours, _monai(Flip(spatial_axis=list(axes)), x))


@pytest.mark.parametrize(("k", "plane"), [(1, (0, 2)), (2, (0, 2)), (3, (0, 2)), (1, (0, 1))])
def test_rot90_equals_monai_rotate90(k: int, plane: tuple[int, int]) -> None:
    x = _image(shape=(1, 8, 8, 8))
    ours = flip_rotate(x, SpatialDraw(None, (), (k, plane)))
    assert np.array_equal(ours, _monai(Rotate90(k=k, spatial_axes=plane), x))


def test_flip_then_rotate_order_matches_monai_chain() -> None:
    x = _image(shape=(1, 6, 9, 6))
    ours = flip_rotate(x, SpatialDraw(None, (1,), (1, (0, 2))))
    expected = _monai(Rotate90(k=1, spatial_axes=(0, 2)), _monai(Flip(spatial_axis=1), x))
    assert np.array_equal(ours, expected)


def test_intensity_transforms_equal_monai() -> None:
    rng = np.random.default_rng(0)
    x = _image(1)
    assert np.allclose(
        apply_intensity(x.copy(), IntensityDraw(0.07, None, None, None), rng),
        _monai(ScaleIntensity(minv=None, maxv=None, factor=0.07), x),
        atol=1e-6,
    )
    assert np.allclose(
        apply_intensity(x.copy(), IntensityDraw(None, -0.05, None, None), rng),
        _monai(ShiftIntensity(offset=-0.05), x),
        atol=1e-6,
    )
    assert np.allclose(
        apply_intensity(x.copy(), IntensityDraw(None, None, 1.3, None), rng),
        _monai(AdjustContrast(gamma=1.3), x),
        atol=1e-5,
    )
    chained = _monai(
        AdjustContrast(gamma=0.8),
        _monai(
            ShiftIntensity(offset=0.1),
            _monai(ScaleIntensity(minv=None, maxv=None, factor=-0.02), x),
        ),
    )
    assert np.allclose(
        apply_intensity(x.copy(), IntensityDraw(-0.02, 0.1, 0.8, None), rng), chained, atol=1e-5
    )


def test_gaussian_noise_has_the_drawn_std() -> None:
    x = np.zeros((1, 40, 40, 40), dtype=np.float32)
    out = apply_intensity(x, IntensityDraw(None, None, None, 0.05), np.random.default_rng(1))
    assert abs(float(out.mean())) < 0.002
    assert float(out.std()) == pytest.approx(0.05, rel=0.02)


def test_affine_patch_equals_scipy_affine_transform() -> None:
    rng = np.random.default_rng(2)
    volume = ndimage.gaussian_filter(rng.normal(size=(2, 40, 44, 36)), (0, 2, 2, 2)).astype(
        np.float32
    )
    labels = (rng.random((40, 44, 36)) < 0.3).astype(np.uint8) * rng.integers(
        1, 4, (40, 44, 36)
    ).astype(np.uint8)
    comps = rng.integers(0, 70000, size=(40, 44, 36)).astype(np.uint32)  # ids above uint16
    patch = (16, 20, 12)
    matrix = affine_matrix(np.array([0.2, -0.15, 0.1]), np.array([1.1, 0.92, 1.05]))
    centre = np.array([19.3, 21.7, 17.2])
    img, lab, comp = sample_affine(
        (volume, labels, comps), (True, False, False), centre, patch, matrix
    )
    offset = centre - matrix @ ((np.array(patch) - 1) / 2.0)
    for c in range(2):
        expected = ndimage.affine_transform(
            volume[c].astype(np.float64), matrix, offset=offset, output_shape=patch, order=1
        )
        assert np.allclose(img[c], expected, atol=1e-4)
    for ours, source in ((lab, labels), (comp, comps)):
        expected = ndimage.affine_transform(
            source, matrix, offset=offset, output_shape=patch, order=0
        )
        assert ours.dtype == source.dtype
        assert np.mean(ours != expected) < 0.002, "nearest neighbour (rounding ties aside)"
        assert set(np.unique(ours)) <= set(np.unique(source))


def test_affine_identity_is_a_plain_crop_with_zero_padding() -> None:
    volume = _image(3, shape=(1, 10, 10, 10))
    centre = np.array([1.5, 4.5, 8.5])  # patch 8^3 starting at (-2, 1, 5): crosses two borders
    (out,) = sample_affine((volume,), (True,), centre, (8, 8, 8), np.eye(3))
    assert np.allclose(out, crop_with_padding(volume, (-2, 1, 5), (8, 8, 8)), atol=1e-5)
    assert np.all(out[:, :2] == 0) and np.all(out[:, :, :, 5:] == 0)


def test_crop_with_padding_matches_numpy_pad() -> None:
    volume = _image(4, shape=(1, 5, 6, 7))
    start, size = (-2, 3, -1), (9, 4, 10)
    padded = np.pad(volume, ((0, 0), (2, 9 - 2 - 5 + 0), (0, 1), (1, 10 - 1 - 7)))
    assert np.array_equal(crop_with_padding(volume, start, size), padded[:, :, 3:7, :])
    assert not np.any(crop_with_padding(volume, (50, 0, 0), (2, 2, 2)))


def test_settings_and_planes() -> None:
    assert AugmentSettings().planes((40, 56, 40)) == [(0, 2)]
    assert AugmentSettings().planes((32, 32, 32)) == [(0, 1), (0, 2), (1, 2)]
    assert AugmentSettings(rot90_planes=()).planes((32, 32, 32)) == []
    with pytest.raises(ValueError, match="equal patch"):
        AugmentSettings(rot90_planes=((0, 1),)).planes((40, 56, 40))
    with pytest.raises(ValueError, match="flip_axes"):
        AugmentSettings(flip_axes=(3,))
    with pytest.raises(ValueError, match="gamma_prob"):
        AugmentSettings(gamma_prob=1.5)
    off = AugmentSettings.off()
    draw = draw_spatial(np.random.default_rng(0), off, off.planes((8, 8, 8)))
    assert draw.matrix is None and draw.flips == () and draw.rot90 is None


def test_flip_axes_restriction_is_respected() -> None:
    settings = AugmentSettings(flip_axes=(0,), flip_prob=1.0, rot90_prob=0.0, affine_prob=0.0)
    rng = np.random.default_rng(0)
    draws = [draw_spatial(rng, settings, settings.planes((8, 8, 8))) for _ in range(20)]
    assert all(d.flips == (0,) and d.rot90 is None and d.matrix is None for d in draws)
