"""Preprocessing: reorientation vs nibabel, normalisation, resampling geometry, inverse mapping."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from segbalance.data.layout import open_dataset
from segbalance.data.preprocess import (
    PreprocessSettings,
    normalize_channel,
    preprocess_case,
    to_original_space,
)
from segbalance.data.reader import read_case

from ._builders import blob_case, make_msd, make_nnunet


def _oblique_affine() -> np.ndarray:
    """LPS-like, permuted axes, anisotropic: voxel axes (0,1,2) -> world (y, -x, -z)."""
    return np.array(
        [[0.0, -0.9, 0.0, 10.0], [1.2, 0.0, 0.0, -5.0], [0.0, 0.0, -2.0, 3.0], [0, 0, 0, 1.0]],
    )


@pytest.fixture
def oblique(tmp_path: Path) -> Path:
    cases = {f"c{i}": blob_case(i, shape=(10, 12, 8)) for i in range(2)}
    return make_msd(tmp_path / "ds", cases, affine=_oblique_affine())


def _case(root: Path, name: str):
    layout = open_dataset(root)
    return layout, read_case(layout, layout.case(name))


def test_reorientation_matches_nibabel_closest_canonical(oblique: Path) -> None:
    layout, raw = _case(oblique, "c0")
    out = preprocess_case(raw, PreprocessSettings(normalization="none"), layout.channels)
    canon_img = nib.as_closest_canonical(nib.load(str(oblique / "imagesTr" / "c0.nii.gz")))
    canon_lab = nib.as_closest_canonical(nib.load(str(oblique / "labelsTr" / "c0.nii.gz")))
    assert np.array_equal(out.image[0], canon_img.get_fdata(dtype=np.float32))
    assert np.array_equal(out.label, np.asanyarray(canon_lab.dataobj))
    assert np.allclose(out.meta["affine"], canon_lab.affine)
    assert out.meta["spacing"] == pytest.approx(canon_lab.header.get_zooms()[:3])
    assert nib.aff2axcodes(np.array(out.meta["affine"])) == ("R", "A", "S")
    assert out.meta["original_shape"] == [10, 12, 8]


def test_zscore_and_ct_normalisation() -> None:
    x = np.random.default_rng(0).normal(300, 50, size=(6, 7, 8)).astype(np.float32)
    z = normalize_channel(x, "zscore", (-1000, 1000))
    assert z.mean() == pytest.approx(0.0, abs=1e-5) and z.std() == pytest.approx(1.0, abs=1e-5)
    ct = normalize_channel(x, "ct", (250.0, 350.0))
    expected = (np.clip(x, 250.0, 350.0) - 250.0) / 100.0
    assert np.allclose(ct, expected, atol=1e-6)
    assert ct.min() >= 0.0 and ct.max() <= 1.0
    assert np.array_equal(normalize_channel(x, "none", (0, 1)), x)


def test_auto_normalisation_per_channel_name(tmp_path: Path) -> None:
    image, label = blob_case(0)
    root = make_nnunet(
        tmp_path / "nn",
        {"a": (np.stack([image, image * 3 - 500]), label)},
        channels={"0": "CT", "1": "T2"},
    )
    layout, raw = _case(root, "a")
    out = preprocess_case(raw, PreprocessSettings(ct_window=(0.0, 200.0)), layout.channels)
    assert out.meta["normalization"] == ["ct", "zscore"]
    assert np.allclose(out.image[0], np.clip(raw.image[0], 0, 200) / 200.0, atol=1e-6)
    assert out.image[1].mean() == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="one per channel"):
        PreprocessSettings(normalization=("zscore",)).schemes(layout.channels)


def test_resampling_geometry_and_nearest_labels(tmp_path: Path) -> None:
    image, label = blob_case(3, shape=(16, 12, 10))
    root = make_msd(tmp_path / "ds", {"a": (image, label)})
    layout, raw = _case(root, "a")
    out = preprocess_case(
        raw,
        PreprocessSettings(target_spacing=(2.0, 2.0, 0.5), normalization="none"),
        layout.channels,
    )
    assert out.label.shape == (8, 6, 20)
    assert out.meta["spacing"] == pytest.approx([2.0, 2.0, 0.5])
    affine = np.array(out.meta["affine"])
    # the first new voxel centre sits at old index (0.5, 0.5, -0.25) (voxel edges aligned)
    assert np.allclose(affine @ [0, 0, 0, 1], [0.5, 0.5, -0.25, 1])
    # nearest: new voxel j along axis 2 takes old voxel floor((j + 0.5) / 2)
    idx = [
        np.floor((np.arange(n) + 0.5) * o / n).astype(int)
        for n, o in zip((8, 6, 20), (16, 12, 10), strict=True)
    ]
    assert np.array_equal(out.label, label[np.ix_(*idx)])
    expected = ndimage.zoom(image, (0.5, 0.5, 2.0), order=3, mode="nearest", grid_mode=True)
    assert np.allclose(out.image[0], expected, atol=1e-3)


def test_to_original_space_roundtrip(oblique: Path) -> None:
    layout, raw = _case(oblique, "c1")
    for spacing in (None, (0.45, 0.6, 1.0)):  # upsampling: nearest back-mapping is exact
        out = preprocess_case(raw, PreprocessSettings(target_spacing=spacing), layout.channels)
        back, affine = to_original_space(out.label, out.meta)
        assert np.array_equal(back, raw.label)
        assert np.allclose(affine, raw.affine)
    with pytest.raises(ValueError, match="expected shape"):
        to_original_space(np.zeros((3, 3, 3)), out.meta)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"normalization": "minmax"}, "normalization"),
        ({"target_spacing": (1.0, 0.0, 1.0)}, "target_spacing"),
        ({"ct_window": (100.0, -100.0)}, "ct_window"),
    ],
)
def test_settings_validation(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        PreprocessSettings(**kwargs)


def test_settings_key_changes_with_settings() -> None:
    a, b = PreprocessSettings(), PreprocessSettings(target_spacing=(1.0, 1.0, 1.0))
    assert a.key() == PreprocessSettings().key()
    assert a.key() != b.key()
