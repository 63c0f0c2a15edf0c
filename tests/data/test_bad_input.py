"""Every kind of bad input, with a real corrupted file: one InputError naming case and problem."""

from __future__ import annotations

import gzip
import json
import os
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segbalance.data.imbalance import check_dataset, imbalance_stats
from segbalance.data.layout import open_dataset
from segbalance.errors import InputError

from ._builders import blob_case, make_msd, make_nnunet, save_nifti


@pytest.fixture
def msd(tmp_path: Path) -> Path:
    return make_msd(tmp_path / "ds", {f"case_{i}": blob_case(i) for i in range(3)})


def _raises(path: Path, where: str, *words: str, read_images: bool = True) -> InputError:
    with pytest.raises(InputError) as info:
        imbalance_stats(path, read_images=read_images)
    err = info.value
    assert err.where == where, err.line()
    for word in words:
        assert word in err.line(), err.line()
    assert "\n" not in err.line()
    return err


def test_clean_dataset_has_no_problem(msd: Path) -> None:
    assert check_dataset(msd) == []
    assert imbalance_stats(msd)["n_cases"] == 3


def test_missing_file_listed_in_dataset_json(msd: Path) -> None:
    (msd / "imagesTr" / "case_1.nii.gz").unlink()
    _raises(msd, "case_1", "imagesTr/case_1.nii.gz", "missing")


def test_shape_mismatch(msd: Path) -> None:
    image, _ = blob_case(1)
    save_nifti(msd / "labelsTr" / "case_1.nii.gz", np.zeros((12, 14, 9), np.uint8))
    _raises(msd, "case_1", "(12, 14, 9)", "shape")
    del image


def test_affine_mismatch_beyond_tolerance_only(msd: Path) -> None:
    _, label = blob_case(2)
    shifted = np.eye(4)
    shifted[0, 3] = 1e-5  # within tolerance: accepted
    save_nifti(msd / "labelsTr" / "case_2.nii.gz", label, shifted)
    assert check_dataset(msd) == []
    shifted[0, 3] = 0.5
    save_nifti(msd / "labelsTr" / "case_2.nii.gz", label, shifted)
    _raises(msd, "case_2", "affine", "0.5")


def test_non_integer_label_values(msd: Path) -> None:
    _, label = blob_case(0)
    bad = label.astype(np.float32)
    bad[0, 0, 0] = 0.5
    save_nifti(msd / "labelsTr" / "case_0.nii.gz", bad)
    _raises(msd, "case_0", "non-integer", "0.5", read_images=False)


def test_integer_valued_float_labels_are_accepted(msd: Path) -> None:
    _, label = blob_case(0)
    save_nifti(msd / "labelsTr" / "case_0.nii.gz", label.astype(np.float32))
    stats = imbalance_stats(msd)
    assert stats["cases"][0]["classes"]["1"]["voxels"] == int((label == 1).sum())


def test_undeclared_label_values(msd: Path) -> None:
    _, label = blob_case(1)
    label[0, 0, 0] = 3
    save_nifti(msd / "labelsTr" / "case_1.nii.gz", label)
    _raises(msd, "case_1", "undeclared", "[3]")


def test_corrupt_gzip(msd: Path) -> None:
    path = msd / "imagesTr" / "case_0.nii.gz"
    data = bytearray(path.read_bytes())
    data[60:400] = np.random.default_rng(0).integers(0, 256, 340, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    _raises(msd, "case_0", "case_0.nii.gz", "corrupt")


def test_truncated_gzip(msd: Path) -> None:
    path = msd / "imagesTr" / "case_2.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises(msd, "case_2", "case_2.nii.gz", "truncated")


def test_truncated_uncompressed_nii(tmp_path: Path) -> None:
    image, label = blob_case(0)
    root = make_msd(tmp_path / "ds", {"a": (image, label)})
    save_nifti(root / "imagesTr" / "raw.nii", image)
    raw = root / "imagesTr" / "raw.nii"
    raw.write_bytes(raw.read_bytes()[:-100])
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][0]["image"] = "./imagesTr/raw.nii"
    (root / "dataset.json").write_text(json.dumps(meta))
    _raises(root, "raw", "truncated")


def test_zero_size_file(msd: Path) -> None:
    (msd / "labelsTr" / "case_1.nii.gz").write_bytes(b"")
    _raises(msd, "case_1", "empty file (0 bytes)")


def test_nan_voxels_in_image(msd: Path) -> None:
    image, _ = blob_case(2)
    image[1, 2, 3] = np.nan
    image[2, 2, 2] = np.nan
    save_nifti(msd / "imagesTr" / "case_2.nii.gz", image)
    _raises(msd, "case_2", "2 NaN", "finite")


def _set_header_shape(path: Path, shape: tuple[int, ...]) -> None:
    """Rewrite the dim field of a .nii.gz header, keeping the (small) data."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    dims = np.frombuffer(bytes(raw[40:56]), dtype="<i2").copy()
    dims[0] = len(shape)
    dims[1 : 1 + len(shape)] = shape
    raw[40:56] = dims.astype("<i2").tobytes()
    path.write_bytes(gzip.compress(bytes(raw)))


@pytest.mark.parametrize("shape", [(30000, 30000, 30000), (400, 400, 400)])
def test_huge_declared_shape_fails_before_allocating(
    msd: Path, shape: tuple[int, int, int]
) -> None:
    path = msd / "imagesTr" / "case_1.nii.gz"
    _set_header_shape(path, shape)
    assert nib.load(str(path)).shape == shape
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            imbalance_stats(msd)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.where == "case_1"
    assert str(shape) in info.value.line()
    # 400^3 float32 would be 256 MB; the check must refuse it with a few MB at most
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MB"


def test_empty_dataset(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "ds", {})
    with pytest.raises(InputError, match="no usable training case"):
        open_dataset(root)


def test_case_name_escaping_the_folder(msd: Path) -> None:
    meta = json.loads((msd / "dataset.json").read_text())
    meta["training"][1]["image"] = "./imagesTr/../../outside.nii.gz"
    (msd / "dataset.json").write_text(json.dumps(meta))
    _raises(msd, "outside", "escapes the dataset folder")


def test_absolute_path_is_refused(msd: Path, tmp_path: Path) -> None:
    meta = json.loads((msd / "dataset.json").read_text())
    meta["training"][0]["label"] = str(tmp_path / "x.nii.gz")
    (msd / "dataset.json").write_text(json.dumps(meta))
    _raises(msd, "case_0", "escapes the dataset folder")


def test_symlink_escaping_the_folder(msd: Path, tmp_path: Path) -> None:
    image, _ = blob_case(0)
    outside = save_nifti(tmp_path / "elsewhere" / "secret.nii.gz", image)
    link = msd / "imagesTr" / "case_0.nii.gz"
    link.unlink()
    os.symlink(outside, link)
    _raises(msd, "case_0", "symlink", "outside the dataset folder")


def test_symlink_inside_the_folder_is_fine(msd: Path) -> None:
    (msd / "imagesTr" / "store").mkdir()
    target = msd / "imagesTr" / "store" / "case_0.nii.gz"
    (msd / "imagesTr" / "case_0.nii.gz").rename(target)
    os.symlink(target, msd / "imagesTr" / "case_0.nii.gz")
    assert check_dataset(msd) == []


def test_wrong_channel_count(tmp_path: Path) -> None:
    image, label = blob_case(0)
    two = np.stack([image, image], axis=-1)
    root = make_msd(tmp_path / "ds", {"a": (two, label), "b": blob_case(1)})
    _raises(root, "a", "2 channel(s)", "1 channel(s)")


def test_broken_dataset_json(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="invalid JSON"):
        open_dataset(root)
    (root / "dataset.json").write_text(
        json.dumps({"training": [], "labels": {"1": "x"}, "modality": {"0": "CT"}})
    )
    with pytest.raises(InputError, match="background value 0"):
        open_dataset(root)


def test_nnunet_missing_channel_and_count(tmp_path: Path) -> None:
    cases = {f"c{i}": (np.stack([blob_case(i)[0]] * 2), blob_case(i)[1]) for i in range(3)}
    root = make_nnunet(tmp_path / "nn", cases)
    assert check_dataset(root) == []
    (root / "imagesTr" / "c1_0001.nii.gz").unlink()
    problems = check_dataset(root)
    assert [p.where for p in problems] == ["c1"]
    assert "missing image channel(s) [1]" in problems[0].line()
    (root / "labelsTr" / "c2.nii.gz").unlink()
    lines = [p.line() for p in check_dataset(root)]
    assert any(line.startswith("c2: no label file") for line in lines)


def test_nnunet_channel_grid_mismatch(tmp_path: Path) -> None:
    image, label = blob_case(0)
    root = make_nnunet(tmp_path / "nn", {"c0": (np.stack([image, image]), label)})
    moved = np.eye(4)
    moved[2, 3] = 2.0
    save_nifti(root / "imagesTr" / "c0_0001.nii.gz", image, moved)
    _raises(root, "c0", "channel", "affine")


def test_check_reports_every_problem_at_once(tmp_path: Path) -> None:
    cases = {f"case_{i}": blob_case(i) for i in range(5)}
    root = make_msd(tmp_path / "ds", cases)
    (root / "imagesTr" / "case_0.nii.gz").unlink()
    (root / "labelsTr" / "case_2.nii.gz").write_bytes(b"")
    image, _ = blob_case(4)
    image[0, 0, 0] = np.nan
    save_nifti(root / "imagesTr" / "case_4.nii.gz", image)
    problems = check_dataset(root)
    assert sorted(p.where for p in problems) == ["case_0", "case_2", "case_4"]
    with pytest.raises(InputError) as info:
        imbalance_stats(root)
    assert info.value.where == "case_0", "without --check the first problem stops"
